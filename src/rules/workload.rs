//! Deployments, StatefulSets, ReplicaSets and DaemonSets whose pod template runs buildkitd: how
//! many instances they ask for, and whether a one-instance workload joins other buildkitd
//! behind a Service ([`super::fleet`]); remote clients in their template are compared with the
//! buildkitd they name ([`super::skew`]).

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::core::admission::Operation;
use serde::Deserialize;

use super::buildkitd::{daemon, runs_buildkitd};
use super::instances::{Demand, judge_template};
use super::lookups::{Lookups, Stop, nothing};
use super::rollout::{Strategy, shared_cache};
use super::{Context, Input, Judgement, Rule, RuleId, fleet, object_ref, skew};
use crate::cluster::{Workload, WorkloadKind};
use crate::detect::Found;

/// Deployments, StatefulSets, ReplicaSets and DaemonSets being created or updated.
pub struct Workloads;

/// A workload as the rule reads it; the four kinds spell these fields alike.
#[derive(Deserialize)]
pub struct Object {
    #[serde(default)]
    metadata: ObjectMeta,
    spec: Option<Spec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    replicas: Option<i32>,
    #[serde(default)]
    selector: Option<LabelSelector>,
    #[serde(default)]
    template: Option<PodTemplateSpec>,
    /// Deployments only.
    #[serde(default)]
    strategy: Option<Strategy>,
}

impl Object {
    fn workload(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        subject: &str,
    ) -> Result<Workload, String> {
        let spec = self
            .spec
            .as_ref()
            .ok_or_else(|| format!("cannot read {subject}: spec is missing"))?;
        Ok(Workload {
            kind,
            namespace: namespace.to_owned(),
            name: self.metadata.name.clone().unwrap_or_default(),
            replicas: spec.replicas,
            selector: spec.selector.clone(),
            template: spec.template.clone().unwrap_or_default(),
        })
    }
}

impl Rule for Workloads {
    type Object = Object;

    async fn review(&self, cx: &Context<'_>, input: Input<'_, Object>) -> Result<Judgement, Stop> {
        let Some(kind) = WorkloadKind::parse(input.request.kind()) else {
            return nothing();
        };
        let obj = input.object()?;
        if obj.metadata.deletion_timestamp.is_some() || judged_through_owner(kind, &obj.metadata) {
            return nothing();
        }
        let namespace = input.namespace();
        let subject = object_ref(
            kind.as_str(),
            input.request.namespace.as_deref(),
            &obj.metadata,
        );
        let new = obj.workload(kind, namespace, &subject)?;
        if input.request.operation == Operation::Update
            && let Some(old) = input.old_object
            && let Ok(old) = old.workload(kind, namespace, &subject)
            && same_shape(&old, &new)
            && input.old_object.and_then(strategy) == strategy(obj)
        {
            return nothing();
        }
        let lookups = Lookups::new(cx, &subject);
        let at = "spec.template.spec";
        let mut rollout = None;
        let mut seen = None;
        let mut findings = judge_template(cx, &lookups, namespace, &new.template, Some(at), |f| {
            if kind == WorkloadKind::Deployment
                && let Some(spec) = new.template.spec.as_ref()
            {
                rollout = shared_cache(&subject, new.replicas, strategy(obj), spec, f);
            }
            let d = demand(&subject, &new, f);
            seen = Some((f.to_vec(), d.is_some()));
            d
        })
        .await?;
        findings.warnings.extend(rollout);
        let Some((found, asked)) = seen else {
            return Ok(findings.into());
        };
        // A workload that asks for several instances is judged for that; one instance may
        // still join others behind a Service.
        if !asked && kind != WorkloadKind::DaemonSet && runs_buildkitd(&found) {
            findings.extend(fleet::judge_workload(cx, &lookups, &new, &found).await?);
        }
        if let Some(spec) = new.template.spec.as_ref() {
            findings.extend(skew::judge(cx, namespace, &subject, at, spec, &found).await?);
        }
        Ok(findings.into())
    }
}

fn strategy(obj: &Object) -> Option<&Strategy> {
    obj.spec.as_ref()?.strategy.as_ref()
}

/// The demand of a workload that runs more than one buildkitd, if it does. `subject` names it
/// (`Deployment ci/bk`); `found` is what detection found in its pod template.
pub fn demand(subject: &str, workload: &Workload, found: &[Found]) -> Option<Demand> {
    if !runs_buildkitd(found) {
        return None;
    }
    match workload.kind {
        WorkloadKind::DaemonSet => Some(Demand {
            rule: RuleId::BuildkitdDaemonset,
            found: format!("{subject} runs one buildkitd on every node"),
            fix: "Use a Deployment with replicas: 1".to_owned(),
            daemon: daemon(found),
        }),
        _ => replicas_demand(subject, workload.replicas, found),
    }
}

/// The demand of a template that runs buildkitd, asked for `replicas` times (any kind with a
/// replica count: the `apps` workloads, ReplicationControllers), when that is more than one.
pub(super) fn replicas_demand(
    subject: &str,
    replicas: Option<i32>,
    found: &[Found],
) -> Option<Demand> {
    // The apiserver defaults an absent `replicas` to 1.
    let n = replicas.unwrap_or(1);
    (runs_buildkitd(found) && n > 1).then(|| Demand {
        rule: RuleId::BuildkitdReplicas,
        found: format!("{subject} asks for {n} replicas"),
        fix: "Set replicas: 1".to_owned(),
        daemon: daemon(found),
    })
}

/// Whether an update leaves what the rule reads as it was: the replica count and the pod
/// template. Controllers' metadata updates and finalizer removal during deletion then pass
/// unjudged, so the webhook never wedges an object that already exists.
pub fn same_shape(old: &Workload, new: &Workload) -> bool {
    old.replicas.unwrap_or(1) == new.replicas.unwrap_or(1) && old.template == new.template
}

/// ReplicaSets a Deployment controls are judged through that Deployment: the Deployment
/// controller writes their replica counts, and denying it would stall rollouts.
pub fn judged_through_owner(kind: WorkloadKind, meta: &ObjectMeta) -> bool {
    kind == WorkloadKind::ReplicaSet
        && meta
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && o.kind == "Deployment")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::workload;
    use serde_json::json;

    #[test]
    fn rejects_buildkitd_deployment_with_three_replicas() {
        let (w, found) = workload(
            WorkloadKind::Deployment,
            Some(3),
            "earthly/buildkitd:v0.8.15",
        );
        let d = demand("Deployment earthly-ci/earthly-buildkitd", &w, &found).expect("demand");
        assert_eq!(d.rule, RuleId::BuildkitdReplicas);
        assert_eq!(
            d.single().message,
            "earthly/buildkitd does not support multi-node setups: Deployment \
             earthly-ci/earthly-buildkitd asks for 3 replicas. Set replicas: 1, or enable sticky \
             multi-instance mode and front it with a Service using sessionAffinity: ClientIP."
        );
    }

    #[test]
    fn accepts_buildkitd_deployment_with_one_replica() {
        let (w, found) = workload(WorkloadKind::Deployment, Some(1), "earthly/buildkitd");
        assert_eq!(demand("Deployment ci/bk", &w, &found), None);
    }

    #[test]
    fn absent_replicas_means_one() {
        let (w, found) = workload(WorkloadKind::StatefulSet, None, "earthly/buildkitd");
        assert_eq!(demand("StatefulSet ci/bk", &w, &found), None);
    }

    #[test]
    fn rejects_buildkitd_statefulset_and_replicaset_with_two_replicas() {
        for kind in [WorkloadKind::StatefulSet, WorkloadKind::ReplicaSet] {
            let (w, found) = workload(kind, Some(2), "earthly/buildkitd");
            let subject = format!("{} ci/bk", kind.as_str());
            let d = demand(&subject, &w, &found).expect("demand");
            assert_eq!(d.found, format!("{subject} asks for 2 replicas"));
        }
    }

    #[test]
    fn rejects_every_buildkitd_daemonset() {
        let (w, found) = workload(
            WorkloadKind::DaemonSet,
            None,
            "earthly/buildkitd@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        );
        let d = demand("DaemonSet ci/bk", &w, &found).expect("demand");
        assert_eq!(d.rule, RuleId::BuildkitdDaemonset);
        assert_eq!(
            d.single().message,
            "earthly/buildkitd does not support multi-node setups: DaemonSet ci/bk runs one \
             buildkitd on every node. Use a Deployment with replicas: 1, or enable sticky \
             multi-instance mode and front it with a Service using sessionAffinity: ClientIP."
        );
    }

    #[test]
    fn accepts_unrelated_workload_with_many_replicas() {
        let (w, found) = workload(WorkloadKind::Deployment, Some(30), "nginx");
        assert_eq!(demand("Deployment ci/web", &w, &found), None);
        let (w, found) = workload(WorkloadKind::DaemonSet, None, "fluent-bit");
        assert_eq!(demand("DaemonSet ci/logs", &w, &found), None);
    }

    #[test]
    fn all_in_one_runner_deployment_is_not_a_buildkitd_demand() {
        let (w, found) = workload(WorkloadKind::Deployment, Some(4), "earthly/earthly");
        assert_eq!(demand("Deployment ci/runners", &w, &found), None);
    }

    #[test]
    fn metadata_only_update_keeps_the_shape() {
        let (old, _) = workload(WorkloadKind::Deployment, Some(3), "earthly/buildkitd");
        let mut new = old.clone();
        new.name = "renamed-in-metadata-only".to_owned();
        assert!(same_shape(&old, &new));
        new.replicas = Some(2);
        assert!(!same_shape(&old, &new));
        let (bumped, _) = workload(WorkloadKind::Deployment, Some(3), "earthly/buildkitd:v2");
        assert!(!same_shape(&old, &bumped));
    }

    #[test]
    fn replicaset_of_a_deployment_is_judged_through_it() {
        let meta: ObjectMeta = serde_json::from_value(json!({"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bk", "uid": "u", "controller": true}
        ]}))
        .expect("meta");
        assert!(judged_through_owner(WorkloadKind::ReplicaSet, &meta));
        assert!(!judged_through_owner(WorkloadKind::StatefulSet, &meta));
        assert!(!judged_through_owner(
            WorkloadKind::ReplicaSet,
            &ObjectMeta::default()
        ));
    }

    #[test]
    fn messages_name_the_family_the_user_runs() {
        let (w, found) = workload(
            WorkloadKind::Deployment,
            Some(2),
            "earthbuild/buildkitd:v0.8.16",
        );
        let d = demand("Deployment ci/bk", &w, &found).expect("demand");
        assert!(
            d.single()
                .message
                .starts_with("earthbuild/buildkitd does not support multi-node setups: Deployment ci/bk asks for 2 replicas."),
            "{}",
            d.single().message
        );
    }
}
