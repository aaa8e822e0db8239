//! buildkitd pods that no controller owns: a second one must not join an existing one behind
//! the same Service (in sticky mode: behind a Service that is not sticky). The Services and the
//! pods they select are looked up by the caller.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Findings;
use super::buildkitd::Demand;
use super::service::{self, service_ref};
use crate::config::Instances;

/// Whether no controller owns the pod (a Job's, ReplicaSet's or StatefulSet's pods are judged
/// through their controller).
pub fn is_bare(meta: &ObjectMeta) -> bool {
    !meta
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true))
}

/// Whether the rule must know the pods behind a Service in front of the new pod: in sticky
/// mode a sticky Service may front any number of instances.
pub fn needs_pods(service: &Service, instances: Instances, min_timeout_seconds: i32) -> bool {
    match instances {
        Instances::Single => true,
        Instances::Sticky => service::stickiness(service, min_timeout_seconds).is_err(),
    }
}

/// A Service in front of the new pod, and the live buildkitd pods it already selects (other
/// than the new pod), by name.
#[derive(Debug, Clone)]
pub struct Neighbours<'a> {
    pub service: &'a Service,
    pub others: Vec<String>,
}

/// The rule. `subject` names the new pod.
pub fn check(
    subject: &str,
    neighbours: &[Neighbours<'_>],
    instances: Instances,
    min_timeout_seconds: i32,
) -> Findings {
    let mut out = Findings::default();
    for n in neighbours {
        let Some(first) = n.others.first() else {
            continue;
        };
        let next_to = match n.others.len() {
            1 => first.clone(),
            // Lookups stop at the first few pods: the count is a lower bound.
            more => format!("{first} (and at least {} more)", more - 1),
        };
        let fix = format!("Run one buildkitd per Service (delete {first} first)");
        match instances {
            Instances::Single => out.violations.push(
                Demand {
                    rule: "buildkitd-second-pod",
                    found: format!(
                        "{subject} would be a second buildkitd behind {}, next to {next_to}",
                        service_ref(n.service)
                    ),
                    fix,
                }
                .single(),
            ),
            Instances::Sticky => out.extend(
                Demand {
                    rule: "buildkitd-second-pod",
                    found: format!("{subject} would be a second buildkitd next to {next_to}"),
                    fix,
                }
                .sticky([n.service], min_timeout_seconds),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::buildkitd::RULE_NOT_STICKY;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "bk", "namespace": "ci"}, "spec": spec}))
            .expect("service")
    }

    fn plain() -> Service {
        service(json!({"selector": {"app": "bk"}}))
    }

    fn sticky() -> Service {
        service(
            json!({"selector": {"app": "bk"}, "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}),
        )
    }

    #[test]
    fn pod_with_a_controller_is_not_bare() {
        let owned: ObjectMeta = serde_json::from_value(json!({"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "u", "controller": true}]}))
        .expect("meta");
        let merely_owned: ObjectMeta = serde_json::from_value(json!({"ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u"}]}))
        .expect("meta");
        assert!(!is_bare(&owned));
        assert!(is_bare(&merely_owned));
        assert!(is_bare(&ObjectMeta::default()));
    }

    #[test]
    fn rejects_second_bare_buildkitd_behind_the_same_service() {
        let s = plain();
        let n = [Neighbours {
            service: &s,
            others: vec!["Pod ci/bk-1".to_owned()],
        }];
        let f = check("Pod ci/bk-2", &n, Instances::Single, 600);
        assert_eq!(f.violations.len(), 1);
        assert_eq!(f.violations[0].rule, "buildkitd-second-pod");
        assert_eq!(
            f.violations[0].message,
            "earthly/buildkitd does not support multi-node setups: Pod ci/bk-2 would be a second \
             buildkitd behind Service ci/bk, next to Pod ci/bk-1. Run one buildkitd per Service \
             (delete Pod ci/bk-1 first), or enable sticky multi-instance mode and front it with a \
             Service using sessionAffinity: ClientIP."
        );
    }

    #[test]
    fn accepts_first_bare_buildkitd_behind_a_service() {
        let s = plain();
        let n = [Neighbours {
            service: &s,
            others: vec![],
        }];
        assert_eq!(
            check("Pod ci/bk-1", &n, Instances::Single, 600),
            Findings::default()
        );
    }

    #[test]
    fn counts_the_other_pods_in_the_message() {
        let s = plain();
        let n = [Neighbours {
            service: &s,
            others: vec!["Pod ci/a".to_owned(), "Pod ci/b".to_owned()],
        }];
        let f = check("Pod ci/c", &n, Instances::Single, 600);
        assert!(
            f.violations[0]
                .message
                .contains("next to Pod ci/a (and at least 1 more)")
        );
    }

    #[test]
    fn sticky_mode_accepts_second_pod_behind_a_sticky_service() {
        let s = sticky();
        assert!(!needs_pods(&s, Instances::Sticky, 600));
        let n = [Neighbours {
            service: &s,
            others: vec!["Pod ci/bk-1".to_owned()],
        }];
        assert_eq!(
            check("Pod ci/bk-2", &n, Instances::Sticky, 600),
            Findings::default()
        );
    }

    #[test]
    fn sticky_mode_rejects_second_pod_behind_a_plain_service() {
        let s = plain();
        assert!(needs_pods(&s, Instances::Sticky, 600));
        let n = [Neighbours {
            service: &s,
            others: vec!["Pod ci/bk-1".to_owned()],
        }];
        let f = check("Pod ci/bk-2", &n, Instances::Sticky, 600);
        assert_eq!(f.violations.len(), 1);
        assert_eq!(f.violations[0].rule, RULE_NOT_STICKY);
        assert_eq!(
            f.violations[0].message,
            "earthly/buildkitd multi-instance mode needs sticky sessions: Pod ci/bk-2 would be a \
             second buildkitd next to Pod ci/bk-1 behind Service ci/bk, which has \
             sessionAffinity: None. Run one buildkitd per Service (delete Pod ci/bk-1 first), or \
             set sessionAffinity: ClientIP with sessionAffinityConfig.clientIP.timeoutSeconds of \
             at least 600 on the Service."
        );
    }

    #[test]
    fn single_mode_always_needs_the_pods() {
        assert!(needs_pods(&sticky(), Instances::Single, 600));
    }
}
