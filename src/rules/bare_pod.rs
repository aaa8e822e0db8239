//! buildkitd pods that no controller owns: a second one must not join an existing one behind
//! the same Service (in sticky mode: behind a Service that is not sticky). The Services and the
//! pods they select are looked up by the caller.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::Operation;

use super::buildkitd::{daemon, pod_ref, runs_buildkitd};
use super::instances::Demand;
use super::lookups::{Lookups, Stop, nothing};
use super::sticky::{self, service_ref};
use super::{Context, Findings, RuleId};
use crate::config::Instances;
use crate::detect::{Family, Found};

/// A bare buildkitd pod being created (or relabelled) at `/validate`. `subject` names it, `meta`
/// is its metadata (`old_labels` the labels before an UPDATE) and `found` is what detection
/// found in it.
pub(crate) async fn judge(
    cx: &Context<'_>,
    namespace: &str,
    operation: &Operation,
    old_labels: Option<Option<&std::collections::BTreeMap<String, String>>>,
    subject: &str,
    meta: &ObjectMeta,
    found: &[Found],
) -> Result<Findings, Stop> {
    if !runs_buildkitd(found) || !is_bare(meta) || meta.deletion_timestamp.is_some() {
        return nothing();
    }
    // Of updates, only a change of labels can put the pod behind another Service.
    if *operation == Operation::Update && old_labels.is_some_and(|old| old == meta.labels.as_ref())
    {
        return nothing();
    }
    let b = &cx.policy.config().buildkitd;
    let lookups = Lookups::new(cx, subject);
    let services = lookups.services(namespace, meta.labels.as_ref()).await?;
    let mut neighbours = Vec::new();
    for svc in sticky::fronting(&services, meta.labels.as_ref()) {
        if !needs_pods(svc, b.instances, b.min_sticky_timeout_seconds) {
            continue;
        }
        let Some(selector) = sticky::pod_selector(svc) else {
            continue;
        };
        let others = lookups
            .live_buildkitd(cx.policy.detector(), namespace, selector)
            .await?
            .iter()
            .filter(|p| meta.name.is_none() || p.metadata.name != meta.name)
            .map(pod_ref)
            .collect();
        neighbours.push(Neighbours {
            service: svc,
            others,
        });
    }
    Ok(check(
        daemon(found),
        subject,
        &neighbours,
        b.instances,
        b.min_sticky_timeout_seconds,
    ))
}

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
        Instances::Sticky => sticky::stickiness(service, min_timeout_seconds).is_err(),
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
    daemon: Family,
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
                    rule: RuleId::BuildkitdSecondPod,
                    found: format!(
                        "{subject} would be a second buildkitd behind {}, next to {next_to}",
                        service_ref(n.service)
                    ),
                    fix,
                    daemon,
                }
                .single(),
            ),
            Instances::Sticky => out.extend(
                Demand {
                    rule: RuleId::BuildkitdSecondPod,
                    found: format!("{subject} would be a second buildkitd next to {next_to}"),
                    fix,
                    daemon,
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
        let f = check(Family::Earthly, "Pod ci/bk-2", &n, Instances::Single, 600);
        assert_eq!(f.violations.len(), 1);
        assert_eq!(f.violations[0].rule, RuleId::BuildkitdSecondPod);
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
            check(Family::Earthly, "Pod ci/bk-1", &n, Instances::Single, 600),
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
        let f = check(Family::Earthly, "Pod ci/c", &n, Instances::Single, 600);
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
            check(Family::Earthly, "Pod ci/bk-2", &n, Instances::Sticky, 600),
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
        let f = check(Family::Earthly, "Pod ci/bk-2", &n, Instances::Sticky, 600);
        assert_eq!(f.violations.len(), 1);
        assert_eq!(f.violations[0].rule, RuleId::BuildkitdServiceNotSticky);
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
