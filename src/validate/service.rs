//! Services in front of buildkitd: which pods a Service selects, whether it keeps each client on
//! one instance ("sticky"), and the sticky-mode rule for a Service being created or updated.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

use super::Violation;
use super::buildkitd::{RULE_NOT_STICKY, STICKY_PREFIX};
use crate::cluster::selector_matches;

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
    fn remedy_for_service(&self, min_timeout_seconds: i32) -> String {
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

/// Whether an update leaves everything these rules read as it was.
pub fn same_shape(old: &Service, new: &Service) -> bool {
    let shape = |s: &Service| {
        s.spec.as_ref().map(|s| {
            (
                s.selector.clone(),
                s.type_.clone(),
                s.cluster_ip.clone(),
                s.session_affinity.clone(),
                s.session_affinity_config.clone(),
            )
        })
    };
    shape(old) == shape(new)
}

/// Whether sticky mode must know which pods the Service selects: only a Service that routes to
/// pods and is not sticky can break the rule.
pub fn needs_pods(service: &Service, min_timeout_seconds: i32) -> bool {
    pod_selector(service).is_some() && stickiness(service, min_timeout_seconds).is_err()
}

/// Sticky mode: a Service that selects buildkitd pods must keep each client on one of them.
/// `subject` names the Service; `buildkitd_pods` names the live buildkitd pods it selects.
pub fn check(
    subject: &str,
    service: &Service,
    buildkitd_pods: &[String],
    min_timeout_seconds: i32,
) -> Option<Violation> {
    let first = buildkitd_pods.first()?;
    let why = stickiness(service, min_timeout_seconds).err()?;
    let pods = match buildkitd_pods.len() {
        1 => first.clone(),
        // Lookups stop at the first few pods: the count is a lower bound.
        2 => format!("{first} and at least 1 more pod"),
        n => format!("{first} and at least {} more pods", n - 1),
    };
    Some(Violation {
        rule: RULE_NOT_STICKY,
        message: format!(
            "{STICKY_PREFIX}{subject} selects buildkitd {pods} but {}. {}, or change its selector \
             so that it selects no buildkitd pods.",
            why.problem(),
            why.remedy_for_service(min_timeout_seconds),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "bk", "namespace": "ci"}, "spec": spec}))
            .expect("service")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

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

    #[test]
    fn sticky_service_needs_no_pod_lookup() {
        let s = service(json!({"selector": {"app": "bk"}, "sessionAffinity": "ClientIP"}));
        assert!(!needs_pods(&s, 600));
        assert!(!needs_pods(&service(json!({})), 600));
        assert!(needs_pods(
            &service(json!({"selector": {"app": "bk"}})),
            600
        ));
    }

    #[test]
    fn rejects_plain_service_in_front_of_buildkitd_pods() {
        let s = service(json!({"selector": {"app": "bk"}}));
        let v = check(
            "Service ci/bk",
            &s,
            &["Pod ci/bk-0".to_owned(), "Pod ci/bk-1".to_owned()],
            600,
        )
        .expect("violation");
        assert_eq!(v.rule, RULE_NOT_STICKY);
        assert_eq!(
            v.message,
            "earthly/buildkitd multi-instance mode needs sticky sessions: Service ci/bk selects \
             buildkitd Pod ci/bk-0 and at least 1 more pod but has sessionAffinity: None. Set \
             sessionAffinity: ClientIP with sessionAffinityConfig.clientIP.timeoutSeconds of at \
             least 600, or change its selector so that it selects no buildkitd pods."
        );
    }

    #[test]
    fn rejects_headless_service_in_front_of_buildkitd_pods() {
        let s = service(json!({"selector": {"app": "bk"}, "clusterIP": "None"}));
        let v = check("Service ci/bk", &s, &["Pod ci/bk-0".to_owned()], 600).expect("violation");
        assert_eq!(
            v.message,
            "earthly/buildkitd multi-instance mode needs sticky sessions: Service ci/bk selects \
             buildkitd Pod ci/bk-0 but is headless (clusterIP: None), so DNS spreads clients over \
             every instance. Use a Service with a cluster IP and sessionAffinity: ClientIP with \
             sessionAffinityConfig.clientIP.timeoutSeconds of at least 600, or change its \
             selector so that it selects no buildkitd pods."
        );
    }

    #[test]
    fn accepts_plain_service_without_buildkitd_pods() {
        let s = service(json!({"selector": {"app": "web"}}));
        assert_eq!(check("Service ci/bk", &s, &[], 600), None);
    }

    #[test]
    fn accepts_sticky_service_in_front_of_buildkitd_pods() {
        let s = service(
            json!({"selector": {"app": "bk"}, "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 3600}}}),
        );
        assert_eq!(
            check("Service ci/bk", &s, &["Pod ci/bk-0".to_owned()], 600),
            None
        );
    }

    #[test]
    fn label_only_update_keeps_the_shape() {
        let a = service(json!({"selector": {"app": "bk"}}));
        let mut b = a.clone();
        b.metadata.labels = Some(labels(&[("x", "y")]));
        assert!(same_shape(&a, &b));
        let c = service(json!({"selector": {"app": "bk"}, "sessionAffinity": "ClientIP"}));
        assert!(!same_shape(&a, &c));
    }
}
