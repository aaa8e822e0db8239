//! Whether a Service keeps each client on one buildkitd ("sticky"), which pods it selects, and
//! the sentences every multi-instance message shares. Read by the workload, bare-pod and Service
//! rules alike.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

use crate::cluster::selector_matches;
use crate::detect::Family;

/// Start of every single-instance denial, naming the daemon the user runs (upstream: "Multi-node
/// `earthly/buildkitd` configurations are currently unsupported").
pub fn single_prefix(daemon: Family) -> String {
    format!(
        "{} does not support multi-node setups: ",
        daemon.buildkitd_image()
    )
}

/// Start of every sticky-mode denial.
pub fn sticky_prefix(daemon: Family) -> String {
    format!(
        "{} multi-instance mode needs sticky sessions: ",
        daemon.buildkitd_image()
    )
}
/// Start of every denial about the TLS configuration of a fleet (the guide: "the TLS
/// configuration needs to be shared across the entire fleet").
pub fn fleet_tls_prefix(daemon: Family) -> String {
    format!(
        "{} multi-instance mode needs one TLS configuration across the fleet: ",
        daemon.buildkitd_image()
    )
}

/// The way out that single-instance mode always offers besides running one instance.
pub const STICKY_WAY_OUT: &str =
    "enable sticky multi-instance mode and front it with a Service using sessionAffinity: ClientIP";

/// `sessionAffinityConfig.clientIP.timeoutSeconds` when a `ClientIP` Service does not set it:
/// the Kubernetes default, 3 hours (ServiceSpec API reference).
pub const DEFAULT_CLIENT_IP_TIMEOUT_SECONDS: i32 = 10_800;

/// Why a Service does not keep a client on one buildkitd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotSticky {
    /// `sessionAffinity` is not `ClientIP` (the value as written; `None` when absent).
    NoAffinity(String),
    /// `ClientIP`, but a client is released after this many seconds, before the minimum.
    ShortTimeout(i32),
    /// `clusterIP: None`: DNS hands out every pod address and no proxy sees the traffic, so
    /// session affinity has no effect.
    Headless,
}

impl NotSticky {
    /// What is wrong, to follow "which": `has sessionAffinity: None`.
    pub fn problem(&self) -> String {
        match self {
            NotSticky::NoAffinity(v) => format!("has sessionAffinity: {v}"),
            NotSticky::ShortTimeout(t) => format!(
                "keeps a client on one instance for only {t} s (sessionAffinityConfig.clientIP.timeoutSeconds)"
            ),
            NotSticky::Headless => {
                "is headless (clusterIP: None), so DNS spreads clients over every instance"
                    .to_owned()
            }
        }
    }

    /// The way out, in the middle of a sentence about the instances behind the Service.
    pub fn remedy(&self, min_timeout_seconds: i32) -> String {
        match self {
            NotSticky::NoAffinity(_) | NotSticky::ShortTimeout(_) => format!(
                "set sessionAffinity: ClientIP with sessionAffinityConfig.clientIP.timeoutSeconds \
                 of at least {min_timeout_seconds} on the Service"
            ),
            NotSticky::Headless => format!(
                "front it with a Service that has a cluster IP and sessionAffinity: ClientIP with \
                 sessionAffinityConfig.clientIP.timeoutSeconds of at least {min_timeout_seconds}"
            ),
        }
    }

    /// The way out, starting a sentence about the Service itself.
    pub(super) fn remedy_for_service(&self, min_timeout_seconds: i32) -> String {
        match self {
            NotSticky::NoAffinity(_) | NotSticky::ShortTimeout(_) => format!(
                "Set sessionAffinity: ClientIP with sessionAffinityConfig.clientIP.timeoutSeconds \
                 of at least {min_timeout_seconds}"
            ),
            NotSticky::Headless => format!(
                "Use a Service with a cluster IP and sessionAffinity: ClientIP with \
                 sessionAffinityConfig.clientIP.timeoutSeconds of at least {min_timeout_seconds}"
            ),
        }
    }
}

/// `Service ns/name`.
pub fn service_ref(service: &Service) -> String {
    super::object_ref("Service", None, &service.metadata)
}

/// Whether a Service keeps each client on one backend for at least `min_timeout_seconds`.
pub fn stickiness(service: &Service, min_timeout_seconds: i32) -> Result<(), NotSticky> {
    let Some(spec) = service.spec.as_ref() else {
        return Err(NotSticky::NoAffinity("None".to_owned()));
    };
    if spec.cluster_ip.as_deref() == Some("None") {
        return Err(NotSticky::Headless);
    }
    match spec.session_affinity.as_deref() {
        Some("ClientIP") => {}
        other => return Err(NotSticky::NoAffinity(other.unwrap_or("None").to_owned())),
    }
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
        .unwrap_or(DEFAULT_CLIENT_IP_TIMEOUT_SECONDS);
    if timeout < min_timeout_seconds {
        return Err(NotSticky::ShortTimeout(timeout));
    }
    Ok(())
}

/// The pod selector of a Service that routes to pods: non-empty, and not an `ExternalName`.
pub fn pod_selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether a Service selects pods carrying `labels`.
pub fn selects(service: &Service, labels: Option<&BTreeMap<String, String>>) -> bool {
    pod_selector(service).is_some_and(|s| selector_matches(s, labels))
}

/// The Services among `services` that select pods carrying `labels`.
pub fn fronting<'a>(
    services: &'a [Service],
    labels: Option<&BTreeMap<String, String>>,
) -> Vec<&'a Service> {
    services.iter().filter(|s| selects(s, labels)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{labels, service};
    use serde_json::json;

    #[test]
    fn client_ip_with_long_enough_timeout_is_sticky() {
        let s = service(json!({"sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}));
        assert_eq!(stickiness(&s, 600), Ok(()));
    }

    #[test]
    fn client_ip_without_config_uses_the_kubernetes_default_timeout() {
        let s = service(json!({"sessionAffinity": "ClientIP"}));
        assert_eq!(stickiness(&s, 10_800), Ok(()));
        assert_eq!(stickiness(&s, 10_801), Err(NotSticky::ShortTimeout(10_800)));
    }

    #[test]
    fn short_timeout_is_not_sticky() {
        let s = service(json!({"sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 300}}}));
        assert_eq!(stickiness(&s, 600), Err(NotSticky::ShortTimeout(300)));
    }

    #[test]
    fn missing_affinity_is_not_sticky() {
        let s = service(json!({"selector": {"a": "b"}}));
        assert_eq!(
            stickiness(&s, 600),
            Err(NotSticky::NoAffinity("None".to_owned()))
        );
    }

    #[test]
    fn headless_service_is_never_sticky() {
        let s = service(json!({"clusterIP": "None", "sessionAffinity": "ClientIP"}));
        assert_eq!(stickiness(&s, 600), Err(NotSticky::Headless));
    }

    #[test]
    fn external_name_and_empty_selectors_select_nothing() {
        let l = labels(&[("app", "bk")]);
        assert!(!selects(
            &service(
                json!({"type": "ExternalName", "externalName": "x", "selector": {"app": "bk"}})
            ),
            Some(&l)
        ));
        assert!(!selects(&service(json!({"selector": {}})), Some(&l)));
        assert!(!selects(&service(json!({})), Some(&l)));
        assert!(selects(
            &service(json!({"selector": {"app": "bk"}})),
            Some(&l)
        ));
    }
}
