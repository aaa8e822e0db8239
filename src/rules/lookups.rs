//! Lookups made on behalf of one object, for the rules that need facts from the cluster. Each
//! family decides from the object alone whether a rule can apply at all (so unrelated objects
//! never cause a lookup), then asks only what that rule needs through [`ClusterView`]. A failed
//! lookup follows `cluster.failureMode`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};

use super::buildkitd::is_live_buildkitd;
use super::{Context, Findings, RuleId, Warning};
use crate::cluster::{ClusterView, LookupError, PodQuery, Workload, WorkloadKind, label_selector};
use crate::config::FailureMode;
use crate::detect::Detector;

/// Why a family stopped early.
pub enum Stop {
    /// The object cannot be read: the review fails with this message.
    Unreadable(String),
    /// The answer is known early (a lookup failed and the failure mode decided).
    Done(Findings),
}

impl From<String> for Stop {
    fn from(message: String) -> Self {
        Stop::Unreadable(message)
    }
}

/// The end of a family's review: its judgement, or an object that cannot be read.
pub(crate) fn finish(outcome: Result<super::Judgement, Stop>) -> Result<super::Judgement, String> {
    match outcome {
        Ok(j) => Ok(j),
        Err(Stop::Done(f)) => Ok(f.into()),
        Err(Stop::Unreadable(m)) => Err(m),
    }
}

/// Nothing to judge.
pub(crate) fn nothing<T: Default>() -> Result<T, Stop> {
    Ok(T::default())
}

/// Lookups made on behalf of one object; failures become findings per the failure mode.
/// Together they get `cluster.lookupTimeoutMs`, so a rule that needs several lookups still
/// answers well within the webhook's own timeout when the API is slow.
pub struct Lookups<'a> {
    cluster: &'a dyn ClusterView,
    failure: FailureMode,
    /// The object under review, as messages name it.
    subject: &'a str,
    budget_ms: u64,
    deadline: tokio::time::Instant,
}

impl<'a> Lookups<'a> {
    pub fn new(cx: &Context<'a>, subject: &'a str) -> Self {
        let settings = &cx.policy.config().cluster;
        let budget_ms = settings.lookup_timeout_ms;
        Self {
            cluster: cx.cluster,
            failure: settings.failure_mode,
            subject,
            budget_ms,
            deadline: tokio::time::Instant::now() + std::time::Duration::from_millis(budget_ms),
        }
    }

    /// The object under review, as messages name it.
    pub fn subject(&self) -> &'a str {
        self.subject
    }

    /// Runs one lookup within what is left of the budget.
    async fn within<T>(
        &self,
        what: impl FnOnce() -> String,
        lookup: impl std::future::Future<Output = Result<T, LookupError>>,
    ) -> Result<T, Stop> {
        match tokio::time::timeout_at(self.deadline, lookup).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.failed(&what(), &error)),
            Err(_) => Err(self.failed(&what(), &LookupError::Timeout(self.budget_ms))),
        }
    }

    fn failed(&self, what: &str, error: &LookupError) -> Stop {
        tracing::warn!(subject = self.subject, lookup = what, %error, "cluster lookup failed");
        let head = format!(
            "{}: cannot check for unsupported buildkitd setups: the lookup of {what} failed: {error}",
            self.subject
        );
        Stop::Done(match self.failure {
            FailureMode::Deny => Findings::violation(
                RuleId::LookupFailed,
                format!(
                    "{head}. Retry once the webhook can reach the Kubernetes API (its \
                     cluster.failureMode is deny)."
                ),
            ),
            FailureMode::Allow => Findings {
                violations: Vec::new(),
                warnings: vec![Warning::new(
                    RuleId::LookupFailed,
                    format!(
                        "{head}; admitted unchecked (the webhook's cluster.failureMode is allow)"
                    ),
                )],
            },
        })
    }

    /// The Services of `namespace` in front of pods labelled `labels`.
    pub(crate) async fn services(
        &self,
        namespace: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Result<Vec<Service>, Stop> {
        let Some(labels) = labels else {
            return Ok(Vec::new());
        };
        self.within(
            || format!("the Services of namespace {namespace}"),
            self.cluster.services(namespace, labels),
        )
        .await
    }

    pub(crate) async fn workload(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Workload>, Stop> {
        self.within(
            || format!("{} {namespace}/{name}", kind.as_str()),
            self.cluster.workload(kind, namespace, name),
        )
        .await
    }

    /// Live buildkitd pods `selector` selects. Two answer every rule, even when one of them is
    /// the pod under review; the messages say "at least" of the rest.
    pub(crate) async fn live_buildkitd(
        &self,
        detector: &Detector,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<Pod>, Stop> {
        self.buildkitd_pods(detector, namespace, selector, 2).await
    }

    /// Live buildkitd pods behind a Service, for the rules that tell its instances apart
    /// ([`super::fleet::FLEET_PODS`] of them).
    pub(crate) async fn fleet(
        &self,
        detector: &Detector,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<Pod>, Stop> {
        let enough = super::fleet::FLEET_PODS;
        self.buildkitd_pods(detector, namespace, selector, enough)
            .await
    }

    /// A Service by name. Offline (`check`), a Service that is not in the input is no answer
    /// rather than a failed lookup: the only rule asking (version skew) is advisory.
    pub(crate) async fn service(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Service>, Stop> {
        let lookup = async {
            match self.cluster.service(namespace, name).await {
                Err(LookupError::Unknown(_)) => Ok(None),
                other => other,
            }
        };
        self.within(|| format!("Service {namespace}/{name}"), lookup)
            .await
    }

    async fn buildkitd_pods(
        &self,
        detector: &Detector,
        namespace: &str,
        selector: &BTreeMap<String, String>,
        enough: usize,
    ) -> Result<Vec<Pod>, Stop> {
        let what = || {
            format!(
                "the pods of namespace {namespace} labelled {}",
                label_selector(selector)
            )
        };
        let keep = |p: &Pod| is_live_buildkitd(detector, p);
        let query = PodQuery {
            selector,
            keep: &keep,
            enough,
        };
        self.within(what, self.cluster.pods(namespace, &query))
            .await
    }
}
