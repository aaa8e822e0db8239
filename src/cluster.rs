//! Facts some rules need from the cluster, behind a small trait so the rules stay pure and the
//! review can be driven by the real API (server), by the other objects of the same input
//! (`check`), or by an in-memory view (tests).

mod apps;
mod coalesce;
mod connect;
mod kube_client;
mod recording;
mod slim;
mod ttl_cache;

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub use coalesce::Coalescer;
pub use connect::{ConnectError, client_config, from_environment};
pub use kube_client::KubeCluster;
pub use recording::Recording;
pub use ttl_cache::TtlCache;

/// Why a lookup gave no answer. The message is shown to users after "lookup failed: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No API is configured (for example `serve` on a laptop with no kubeconfig).
    #[error("no Kubernetes API is configured")]
    Unavailable,
    /// The API did not answer in time.
    #[error("the Kubernetes API did not answer within {0} ms")]
    Timeout(u64),
    /// The API answered with an error.
    #[error("{0}")]
    Api(String),
    /// Offline (`check`): the answer would need the cluster; the text says what is missing.
    #[error("{0}")]
    Unknown(String),
}

/// Workload kinds whose pod template the rules inspect, named as Kubernetes spells them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::IntoStaticStr,
    strum::EnumString,
)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    ReplicaSet,
    DaemonSet,
}

impl WorkloadKind {
    /// The kind as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses a kind name (`Deployment`), as found in `scaleTargetRef.kind`.
    pub fn parse(kind: &str) -> Option<Self> {
        kind.parse().ok()
    }
}

/// The parts of a workload the rules need.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// `spec.replicas` (absent means 1; always absent for a DaemonSet).
    pub replicas: Option<i32>,
    pub selector: Option<LabelSelector>,
    pub template: PodTemplateSpec,
}

/// Which pods a pod lookup wants, and how many answer the question.
#[derive(Clone, Copy)]
pub struct PodQuery<'a> {
    /// The pods carry every pair of it (a Service's equality selector). Empty selects nothing.
    pub selector: &'a BTreeMap<String, String>,
    /// Which of the selected pods count. It must judge the pod alone, the same way for every
    /// review of this process (the policy's detector), because answers are shared between
    /// reviews: coalesced while in flight and cached.
    pub keep: &'a (dyn Fn(&Pod) -> bool + Sync),
    /// How many kept pods answer the question: the lookup stops reading there.
    pub enough: usize,
}

impl<'a> PodQuery<'a> {
    /// Every pod `selector` selects.
    pub fn all(selector: &'a BTreeMap<String, String>) -> Self {
        Self {
            selector,
            keep: &|_| true,
            enough: usize::MAX,
        }
    }

    /// Whether a pod in the namespace is one of the answer.
    pub fn wants(&self, pod: &Pod) -> bool {
        selector_matches(self.selector, pod.metadata.labels.as_ref()) && (self.keep)(pod)
    }
}

impl std::fmt::Debug for PodQuery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodQuery")
            .field("selector", &label_selector(self.selector))
            .field("enough", &self.enough)
            .finish_non_exhaustive()
    }
}

/// Whether a Service routes to pods carrying `labels`: it has a non-empty selector they match
/// and is not an `ExternalName` alias.
pub fn service_selects(service: &Service, labels: &BTreeMap<String, String>) -> bool {
    service.spec.as_ref().is_some_and(|spec| {
        spec.type_.as_deref() != Some("ExternalName")
            && spec
                .selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, Some(labels)))
    })
}

/// Read-only lookups, each scoped to what one request needs: single objects by name, or lists
/// within one namespace. Never cluster-wide. Lists answer only what the rule asks (the
/// Services in front of some labels, the first pods of a query), so an answer stays small
/// however many objects the namespace holds.
#[async_trait]
pub trait ClusterView: Send + Sync {
    /// The labels of a namespace; `Ok(None)` when it does not exist.
    async fn namespace_labels(
        &self,
        namespace: &str,
    ) -> Result<Option<BTreeMap<String, String>>, LookupError>;

    /// A workload by kind and name; `Ok(None)` when it does not exist.
    async fn workload(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Workload>, LookupError>;

    /// The Services of a namespace that select pods labelled `labels` ([`service_selects`]).
    async fn services(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Service>, LookupError>;

    /// The pods of a namespace that `query` wants, at most `query.enough` of them.
    async fn pods(&self, namespace: &str, query: &PodQuery<'_>) -> Result<Vec<Pod>, LookupError>;

    /// A Service by name (the one a client's `BUILDKIT_HOST` names); `Ok(None)` when it does not
    /// exist.
    async fn service(&self, namespace: &str, name: &str) -> Result<Option<Service>, LookupError>;
}

/// A view with no cluster behind it: every lookup is [`LookupError::Unavailable`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCluster;

#[async_trait]
impl ClusterView for NoCluster {
    async fn namespace_labels(
        &self,
        _: &str,
    ) -> Result<Option<BTreeMap<String, String>>, LookupError> {
        Err(LookupError::Unavailable)
    }

    async fn workload(
        &self,
        _: WorkloadKind,
        _: &str,
        _: &str,
    ) -> Result<Option<Workload>, LookupError> {
        Err(LookupError::Unavailable)
    }

    async fn services(
        &self,
        _: &str,
        _: &BTreeMap<String, String>,
    ) -> Result<Vec<Service>, LookupError> {
        Err(LookupError::Unavailable)
    }

    async fn pods(&self, _: &str, _: &PodQuery<'_>) -> Result<Vec<Pod>, LookupError> {
        Err(LookupError::Unavailable)
    }

    async fn service(&self, _: &str, _: &str) -> Result<Option<Service>, LookupError> {
        Err(LookupError::Unavailable)
    }
}

/// Whether `labels` include every pair of `selector` (a Service's equality selector).
pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    // An empty Service selector selects nothing (its endpoints are managed by hand).
    !selector.is_empty()
        && labels.is_some_and(|l| selector.iter().all(|(k, v)| l.get(k) == Some(v)))
}

/// A Service's equality selector in `labelSelector` syntax: `app=earthly,component=buildkitd`.
/// Label keys and values cannot hold `,` or `=`, so nothing needs escaping.
pub fn label_selector(selector: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

/// An in-memory cluster: the unit tests' fake API and the `check` command's view of its input.
#[derive(Debug, Clone, Default)]
pub struct MemoryCluster {
    /// Namespace name -> labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub workloads: Vec<Workload>,
    pub services: Vec<Service>,
    pub pods: Vec<Pod>,
    /// When set, an object that is not here is unknown rather than absent: lookups that miss
    /// answer [`LookupError::Unknown`] (`check` knows only its input, not the cluster).
    pub partial: bool,
}

impl MemoryCluster {
    fn missing<T>(&self, what: String, absent: T) -> Result<T, LookupError> {
        if self.partial {
            Err(LookupError::Unknown(format!(
                "{what} is not in the input; the cluster would have to be asked"
            )))
        } else {
            Ok(absent)
        }
    }
}

#[async_trait]
impl ClusterView for MemoryCluster {
    async fn namespace_labels(
        &self,
        namespace: &str,
    ) -> Result<Option<BTreeMap<String, String>>, LookupError> {
        match self.namespaces.get(namespace) {
            Some(l) => Ok(Some(l.clone())),
            None => self.missing(format!("Namespace {namespace}"), None),
        }
    }

    async fn workload(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Workload>, LookupError> {
        match self
            .workloads
            .iter()
            .find(|w| w.kind == kind && w.namespace == namespace && w.name == name)
        {
            Some(w) => Ok(Some(w.clone())),
            None => self.missing(format!("{} {namespace}/{name}", kind.as_str()), None),
        }
    }

    async fn services(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Service>, LookupError> {
        Ok(self
            .services
            .iter()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(namespace) && service_selects(s, labels)
            })
            .cloned()
            .collect())
    }

    async fn pods(&self, namespace: &str, query: &PodQuery<'_>) -> Result<Vec<Pod>, LookupError> {
        Ok(self
            .pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace) && query.wants(p))
            .take(query.enough)
            .cloned()
            .collect())
    }

    async fn service(&self, namespace: &str, name: &str) -> Result<Option<Service>, LookupError> {
        let found = self.services.iter().find(|s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && s.metadata.name.as_deref() == Some(name)
        });
        match found {
            Some(s) => Ok(Some(s.clone())),
            None => self.missing(format!("Service {namespace}/{name}"), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn selector_needs_every_pair() {
        let sel = labels(&[("app", "earthly"), ("component", "buildkitd")]);
        assert!(selector_matches(
            &sel,
            Some(&labels(&[
                ("app", "earthly"),
                ("component", "buildkitd"),
                ("x", "y")
            ]))
        ));
        assert!(!selector_matches(
            &sel,
            Some(&labels(&[("app", "earthly")]))
        ));
        assert!(!selector_matches(&sel, None));
    }

    #[test]
    fn empty_selector_selects_nothing() {
        assert!(!selector_matches(
            &BTreeMap::new(),
            Some(&labels(&[("a", "b")]))
        ));
    }

    #[tokio::test]
    async fn partial_memory_cluster_says_what_it_does_not_know() {
        let c = MemoryCluster {
            partial: true,
            ..Default::default()
        };
        let err = c
            .workload(WorkloadKind::Deployment, "ci", "bk")
            .await
            .expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "Deployment ci/bk is not in the input; the cluster would have to be asked"
        );
        let complete = MemoryCluster::default();
        assert_eq!(
            complete
                .workload(WorkloadKind::Deployment, "ci", "bk")
                .await,
            Ok(None)
        );
    }
}
