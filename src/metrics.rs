//! Prometheus metrics: what the webhook did, how fast, and how its certificate and cluster
//! lookups fare. One [`Metrics`] per server; the admin port serves it as text at `/metrics`.
//!
//! Every label value is a `&'static str` from a closed set, so a hostile or buggy client cannot
//! grow the label space (an unknown resource kind is counted as `other`), and recording a request
//! allocates nothing.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::cluster::LookupError;
use crate::mutate::Rule;

mod metered;
use crate::review::{Summary, Verdict};
pub use metered::MeteredCluster;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets: 25 µs doubling to 52 s. A review of a pod takes tens of microseconds, a
/// request with a cluster lookup milliseconds, and the apiserver gives up after `timeoutSeconds`
/// (at most 30 s). The buckets reach past that because `histogram_quantile` never answers more
/// than the highest finite bucket: with buckets ending at 1.6 s, a p99 of 4 s against a 5 s
/// timeout would read as 1.6 s and the chart's latency alert could never fire.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(25e-6, 2.0, 22)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    kind: &'static str,
    operation: &'static str,
    outcome: &'static str,
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViolationLabels {
    rule: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupFailureLabels {
    method: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// How a TLS connection ended up, for `connections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ConnectionResult {
    /// Handshake done, HTTP served.
    Served,
    /// The TLS handshake failed (a port scanner, a client that does not trust our CA).
    HandshakeFailed,
    /// The client did not finish the handshake within the header read timeout.
    #[strum(serialize = "handshake_timeout")]
    HandshakeTimedOut,
}

impl ConnectionResult {
    fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What the handler learnt about a review, handed to the metrics layer in the response's
/// extensions so that one place records every request, answered or refused.
#[derive(Debug, Clone, Default)]
pub struct ReviewOutcome {
    pub kind: &'static str,
    pub operation: &'static str,
    pub verdict: Option<Verdict>,
    pub patch_operations: Vec<(Rule, usize)>,
    pub violations: Vec<&'static str>,
}

impl ReviewOutcome {
    /// The metric view of a review summary.
    pub fn of(summary: &Summary) -> Self {
        Self {
            kind: kind_label(&summary.kind),
            operation: summary.operation,
            verdict: Some(summary.verdict),
            patch_operations: summary.patch_operations.clone(),
            violations: summary.violations.iter().map(|v| v.rule.as_str()).collect(),
        }
    }
}

/// Resource kinds the webhook is registered for, and a few neighbours; anything else is
/// `other` so the label space stays bounded.
fn kind_label(kind: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "Pod",
        "Deployment",
        "StatefulSet",
        "ReplicaSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "Service",
        "Scale",
        "HorizontalPodAutoscaler",
        "PodTemplate",
        "ReplicationController",
    ];
    match kind {
        "" => "",
        k => KNOWN
            .iter()
            .find(|known| **known == k)
            .copied()
            .unwrap_or("other"),
    }
}

/// The outcome label of an HTTP answer the handler did not give a review for.
fn outcome_of_status(code: u16) -> &'static str {
    match code {
        200..=299 => "allowed",
        _ => "error",
    }
}

/// Every metric the webhook exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<EndpointLabels, Histogram>,
    patch_operations: Family<RuleLabels, Counter>,
    violations: Family<ViolationLabels, Counter>,
    lookups: Family<LookupLabels, Counter>,
    lookup_failures: Family<LookupFailureLabels, Counter>,
    certificate_expiry: Gauge,
    certificate_reloads: Family<ResultLabels, Counter>,
    connections: Family<ResultLabels, Counter>,
    open_connections: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered under the `earthly_webhook_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("earthly_webhook");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Webhook requests by endpoint, resource kind, operation, outcome (allowed, mutated, denied, error) and HTTP status code",
            requests.clone(),
        );
        let duration =
            Family::<EndpointLabels, Histogram>::new_with_constructor(|| -> Histogram {
                Histogram::new(latency_buckets())
            });
        registry.register_with_unit(
            "request_duration",
            "Time from request head to response head, including reading the body",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        let patch_operations = Family::<RuleLabels, Counter>::default();
        registry.register(
            "patch_operations",
            "JSON patch operations sent, by mutation rule",
            patch_operations.clone(),
        );
        let violations = Family::<ViolationLabels, Counter>::default();
        registry.register(
            "violations_admitted",
            "Violations admitted by warn or audit mode, by rule",
            violations.clone(),
        );
        let lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "cluster_lookups",
            "Lookups against the Kubernetes API, by method",
            lookups.clone(),
        );
        let lookup_failures = Family::<LookupFailureLabels, Counter>::default();
        registry.register(
            "cluster_lookup_failures",
            "Lookups against the Kubernetes API that gave no answer, by method and reason",
            lookup_failures.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the serving certificate expires, in seconds since the Unix epoch",
            certificate_expiry.clone(),
        );
        let certificate_reloads = Family::<ResultLabels, Counter>::default();
        // Both results exist from the start at 0: a failed reload happens once per file change,
        // and PromQL's `increase` cannot see a series that is born at 1.
        for result in ["success", "failure"] {
            let _ = certificate_reloads.get_or_create(&ResultLabels { result });
        }
        registry.register(
            "certificate_reloads",
            "Changes of the certificate files seen, by result (success keeps the new pair, failure the old)",
            certificate_reloads.clone(),
        );
        let connections = Family::<ResultLabels, Counter>::default();
        registry.register(
            "connections",
            "TLS connections accepted, by result",
            connections.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "TLS connections being served now",
            open_connections.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Self {
            registry,
            requests,
            duration,
            patch_operations,
            violations,
            lookups,
            lookup_failures,
            certificate_expiry,
            certificate_reloads,
            connections,
            open_connections,
        }
    }

    /// Records one webhook request: `review` is what the handler said about it, absent when the
    /// request was refused before a review (413, timeout, unknown mode, unreadable body).
    pub fn record_request(
        &self,
        endpoint: &'static str,
        code: u16,
        review: Option<&ReviewOutcome>,
        elapsed: Duration,
    ) {
        let labels = match review {
            Some(r) => RequestLabels {
                endpoint,
                kind: r.kind,
                operation: r.operation,
                outcome: r
                    .verdict
                    .map_or_else(|| outcome_of_status(code), Verdict::as_str),
                code,
            },
            None => RequestLabels {
                endpoint,
                kind: "",
                operation: "",
                outcome: outcome_of_status(code),
                code,
            },
        };
        self.requests.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&EndpointLabels { endpoint })
            .observe(elapsed.as_secs_f64());
        if let Some(r) = review {
            for (rule, n) in &r.patch_operations {
                self.patch_operations
                    .get_or_create(&RuleLabels {
                        rule: rule.as_str(),
                    })
                    .inc_by(*n as u64);
            }
            for rule in &r.violations {
                self.violations
                    .get_or_create(&ViolationLabels { rule })
                    .inc();
            }
        }
    }

    /// Records the expiry time of the certificate now served.
    pub fn set_certificate_expiry(&self, not_after_unix: Option<i64>) {
        self.certificate_expiry.set(not_after_unix.unwrap_or(0));
    }

    /// Records a change of the certificate files and whether the new pair was taken.
    pub fn record_certificate_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.certificate_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Records how an accepted connection's handshake went.
    pub fn record_connection(&self, result: ConnectionResult) {
        self.connections
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .inc();
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn open_connection(self: &Arc<Self>) -> OpenConnection {
        self.open_connections.inc();
        OpenConnection(self.clone())
    }

    fn record_lookup<T>(&self, method: &'static str, result: &Result<T, LookupError>) {
        self.lookups.get_or_create(&LookupLabels { method }).inc();
        if let Err(e) = result {
            let reason = match e {
                LookupError::Unavailable => "unavailable",
                LookupError::Timeout(_) => "timeout",
                LookupError::Api(_) => "api",
                LookupError::Unknown(_) => "unknown",
            };
            self.lookup_failures
                .get_or_create(&LookupFailureLabels { method, reason })
                .inc();
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Keeps a connection counted in `open_connections`.
pub struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::{ClusterView, MemoryCluster, NoCluster};

    /// The value of the sample line that starts with `prefix` (name and labels).
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn a_review_counts_once_with_its_labels_and_patch_operations() {
        let m = Metrics::new();
        let outcome = ReviewOutcome {
            kind: "Pod",
            operation: "CREATE",
            verdict: Some(Verdict::Mutated),
            patch_operations: vec![(Rule::Privileged, 1), (Rule::ScratchVolume, 2)],
            violations: vec![],
        };
        m.record_request("mutate", 200, Some(&outcome), Duration::from_micros(40));
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                r#"earthly_webhook_requests_total{endpoint="mutate",kind="Pod",operation="CREATE",outcome="mutated",code="200"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"earthly_webhook_patch_operations_total{rule="scratch_volume"}"#
            ),
            Some(2.0)
        );
        // 40 µs falls in the 50 µs bucket, not the 25 µs one.
        assert_eq!(
            sample(
                &text,
                r#"earthly_webhook_request_duration_seconds_bucket{le="0.000025",endpoint="mutate"}"#
            ),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"earthly_webhook_request_duration_seconds_bucket{le="0.00005",endpoint="mutate"}"#
            ),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn a_refused_request_is_an_error_with_its_code() {
        let m = Metrics::new();
        m.record_request("validate", 413, None, Duration::from_micros(5));
        assert_eq!(
            sample(
                &m.encode(),
                r#"earthly_webhook_requests_total{endpoint="validate",kind="",operation="",outcome="error",code="413"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn unknown_kinds_share_one_label() {
        assert_eq!(kind_label("Pod"), "Pod");
        assert_eq!(kind_label("FooBar"), "other");
        assert_eq!(kind_label("pod"), "other");
    }

    #[test]
    fn certificate_reload_results_start_at_zero() {
        let m = Metrics::new();
        for result in ["success", "failure"] {
            let line = format!(r#"earthly_webhook_certificate_reloads_total{{result="{result}"}}"#);
            assert_eq!(sample(&m.encode(), &line), Some(0.0), "{line}");
        }
        m.record_certificate_reload(false);
        assert_eq!(
            sample(
                &m.encode(),
                r#"earthly_webhook_certificate_reloads_total{result="failure"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn latency_buckets_reach_past_the_longest_webhook_timeout() {
        // admissionregistration.k8s.io/v1 caps timeoutSeconds at 30.
        let top = latency_buckets().fold(0.0_f64, f64::max);
        assert!(top > 30.0, "highest finite bucket {top} s");
    }

    #[test]
    fn build_info_names_the_version() {
        let text = Metrics::new().encode();
        assert!(
            text.contains(&format!(
                r#"earthly_webhook_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }

    #[tokio::test]
    async fn metered_cluster_counts_calls_and_failures() {
        let m = Arc::new(Metrics::new());
        let failing = MeteredCluster::new(Arc::new(NoCluster), m.clone());
        let labels = BTreeMap::from([("app".to_owned(), "bk".to_owned())]);
        assert!(failing.services("ci", &labels).await.is_err());
        let working = MeteredCluster::new(Arc::new(MemoryCluster::default()), m.clone());
        assert_eq!(working.services("ci", &labels).await, Ok(vec![]));
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                r#"earthly_webhook_cluster_lookups_total{method="services"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"earthly_webhook_cluster_lookup_failures_total{method="services",reason="unavailable"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn open_connections_follow_the_guards() {
        let m = Arc::new(Metrics::new());
        let a = m.open_connection();
        let b = m.open_connection();
        drop(a);
        assert_eq!(
            sample(&m.encode(), "earthly_webhook_open_connections "),
            Some(1.0)
        );
        drop(b);
        assert_eq!(
            sample(&m.encode(), "earthly_webhook_open_connections "),
            Some(0.0)
        );
    }
}
