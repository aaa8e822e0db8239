//! Writes to the `scale` subresource (`kubectl scale`, autoscalers): the request carries an
//! `autoscaling/v1` Scale with no pod template, so the rule needs the target workload, looked up
//! by the caller.

use k8s_openapi::api::autoscaling::v1::ScaleSpec;
use serde::Deserialize;

use super::buildkitd::{daemon, runs_buildkitd};
use super::instances::{Demand, judge_template};
use super::lookups::{Lookups, Stop, nothing};
use super::{Context, Input, Judgement, Rule, RuleId};
use crate::cluster::{Workload, WorkloadKind};
use crate::detect::Found;

/// Writes to the `scale` subresource of Deployments, StatefulSets and ReplicaSets.
pub struct Scale;

/// An `autoscaling/v1` Scale as the rule reads it.
#[derive(Deserialize)]
pub struct Object {
    spec: Option<ScaleSpec>,
}

impl Rule for Scale {
    type Object = Object;

    async fn review(&self, cx: &Context<'_>, input: Input<'_, Object>) -> Result<Judgement, Stop> {
        let request = input.request;
        let Some(kind) = target_kind(&request.resource.group, &request.resource.resource) else {
            return nothing();
        };
        let namespace = input.namespace();
        let subject = format!("{} {namespace}/{}", kind.as_str(), request.name);
        let what = format!("Scale {namespace}/{}", request.name);
        // An absent spec.replicas is 0 to the apiserver (autoscaling/v1 ScaleSpec).
        let replicas = |obj: &Object| -> Result<i32, String> {
            let spec = obj
                .spec
                .as_ref()
                .ok_or_else(|| format!("cannot read {what}: spec is missing"))?;
            Ok(spec.replicas.unwrap_or(0))
        };
        let new = replicas(input.object()?)?;
        if new <= 1 {
            return nothing();
        }
        if let Some(old) = input.old_object
            && replicas(old).ok() == Some(new)
        {
            return nothing();
        }
        let lookups = Lookups::new(cx, &subject);
        // Not found: the apiserver answers the scale request with 404 itself.
        let Some(target) = lookups.workload(kind, namespace, &request.name).await? else {
            return nothing();
        };
        judge_template(cx, &lookups, namespace, &target.template, None, |found| {
            demand(&target, found, new)
        })
        .await
        .map(Judgement::from)
    }
}

/// The workload kind whose `scale` subresource a request writes, from `request.resource`.
/// DaemonSets have no `scale` subresource; other groups are not ours to judge.
pub fn target_kind(group: &str, resource: &str) -> Option<WorkloadKind> {
    match (group, resource) {
        ("apps", "deployments") => Some(WorkloadKind::Deployment),
        ("apps", "statefulsets") => Some(WorkloadKind::StatefulSet),
        ("apps", "replicasets") => Some(WorkloadKind::ReplicaSet),
        _ => None,
    }
}

/// The demand of scaling `target` to `replicas`, when it runs buildkitd and asks for more than
/// one. `found` is what detection found in the target's pod template.
pub fn demand(target: &Workload, found: &[Found], replicas: i32) -> Option<Demand> {
    if !runs_buildkitd(found) || replicas <= 1 {
        return None;
    }
    Some(Demand {
        rule: RuleId::BuildkitdScale,
        found: format!(
            "{} {}/{} is being scaled to {replicas} replicas",
            target.kind.as_str(),
            target.namespace,
            target.name
        ),
        fix: "Scale it to 1 replica".to_owned(),
        daemon: daemon(found),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::workload;

    fn target(image: &str) -> (Workload, Vec<Found>) {
        let (mut w, found) = workload(WorkloadKind::Deployment, Some(1), image);
        w.namespace = "earthly-ci".to_owned();
        w.name = "earthly-buildkitd".to_owned();
        (w, found)
    }

    #[test]
    fn scale_targets_come_from_the_resource() {
        assert_eq!(
            target_kind("apps", "deployments"),
            Some(WorkloadKind::Deployment)
        );
        assert_eq!(
            target_kind("apps", "statefulsets"),
            Some(WorkloadKind::StatefulSet)
        );
        assert_eq!(
            target_kind("apps", "replicasets"),
            Some(WorkloadKind::ReplicaSet)
        );
        assert_eq!(target_kind("apps", "daemonsets"), None);
        assert_eq!(target_kind("argoproj.io", "rollouts"), None);
    }

    #[test]
    fn rejects_scaling_buildkitd_deployment_to_two() {
        let (w, found) = target("earthly/buildkitd:v0.5.20");
        let d = demand(&w, &found, 2).expect("demand");
        assert_eq!(d.rule, RuleId::BuildkitdScale);
        assert_eq!(
            d.single().message,
            "earthly/buildkitd does not support multi-node setups: Deployment \
             earthly-ci/earthly-buildkitd is being scaled to 2 replicas. Scale it to 1 replica, \
             or enable sticky multi-instance mode and front it with a Service using \
             sessionAffinity: ClientIP."
        );
    }

    #[test]
    fn accepts_scaling_buildkitd_to_one_or_zero() {
        let (w, found) = target("earthly/buildkitd");
        assert_eq!(demand(&w, &found, 1), None);
        assert_eq!(demand(&w, &found, 0), None);
    }

    #[test]
    fn accepts_scaling_unrelated_deployment() {
        let (w, found) = target("nginx");
        assert_eq!(demand(&w, &found, 20), None);
    }
}
