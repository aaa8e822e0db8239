//! HorizontalPodAutoscalers (`autoscaling/v2` and `v1`, whose `scaleTargetRef` and
//! `maxReplicas` are spelt alike): an autoscaler that may scale a buildkitd workload beyond one
//! replica. The target workload is looked up by the caller.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::Operation;
use serde::Deserialize;

use super::buildkitd::{daemon, runs_buildkitd};
use super::instances::{Demand, judge_template};
use super::lookups::{Lookups, Stop, nothing};
use super::{Context, Input, Judgement, Rule, RuleId, object_ref};
use crate::cluster::{Workload, WorkloadKind};
use crate::detect::Found;

/// HorizontalPodAutoscalers being created or updated.
pub struct Autoscalers;

/// An autoscaler as the rule reads it.
#[derive(Deserialize)]
pub struct Object {
    #[serde(default)]
    metadata: ObjectMeta,
    spec: Option<AutoscalerSpec>,
}

impl Rule for Autoscalers {
    type Object = Object;

    async fn review(&self, cx: &Context<'_>, input: Input<'_, Object>) -> Result<Judgement, Stop> {
        let obj = input.object()?;
        if obj.metadata.deletion_timestamp.is_some() {
            return nothing();
        }
        let subject = object_ref(
            "HorizontalPodAutoscaler",
            input.request.namespace.as_deref(),
            &obj.metadata,
        );
        let spec = obj
            .spec
            .as_ref()
            .ok_or_else(|| format!("cannot read {subject}: spec is missing"))?;
        if spec.max_replicas <= 1 {
            return nothing();
        }
        if input.request.operation == Operation::Update
            && input.old_object.and_then(|o| o.spec.as_ref()) == Some(spec)
        {
            return nothing();
        }
        let Some((kind, name)) = target(spec) else {
            return nothing();
        };
        let namespace = input.namespace();
        let lookups = Lookups::new(cx, &subject);
        // An autoscaler may be created before its target; the target's own scale requests are
        // judged when the autoscaler makes them.
        let Some(target) = lookups.workload(kind, namespace, name).await? else {
            return nothing();
        };
        judge_template(cx, &lookups, namespace, &target.template, None, |found| {
            demand(&subject, spec, &target, found)
        })
        .await
        .map(Judgement::from)
    }
}

/// The parts of an autoscaler's `spec` the rule reads, in both API versions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerSpec {
    pub scale_target_ref: TargetRef,
    pub max_replicas: i32,
}

/// `spec.scaleTargetRef`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    #[serde(default)]
    pub api_version: Option<String>,
    pub kind: String,
    pub name: String,
}

/// The workload an autoscaler scales, when it is one of the `apps` kinds the rules know.
/// Custom resources (Argo Rollouts, ...) are not ours to judge.
pub fn target(spec: &AutoscalerSpec) -> Option<(WorkloadKind, &str)> {
    let r = &spec.scale_target_ref;
    let in_apps = r
        .api_version
        .as_deref()
        .is_none_or(|v| v.split('/').next() == Some("apps") && v.contains('/'));
    let kind = WorkloadKind::parse(&r.kind).filter(|k| *k != WorkloadKind::DaemonSet)?;
    in_apps.then_some((kind, r.name.as_str()))
}

/// The demand of an autoscaler `subject` that may scale `target` to `spec.maxReplicas`, when the
/// target runs buildkitd and the maximum is more than one.
pub fn demand(
    subject: &str,
    spec: &AutoscalerSpec,
    target: &Workload,
    found: &[Found],
) -> Option<Demand> {
    if !runs_buildkitd(found) || spec.max_replicas <= 1 {
        return None;
    }
    Some(Demand {
        rule: RuleId::BuildkitdAutoscaler,
        found: format!(
            "{subject} may scale {} {}/{} up to {} replicas",
            target.kind.as_str(),
            target.namespace,
            target.name,
            spec.max_replicas
        ),
        fix: "Set maxReplicas: 1 (or remove the autoscaler)".to_owned(),
        daemon: daemon(found),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::workload;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> AutoscalerSpec {
        serde_json::from_value(v).expect("spec")
    }

    fn target_workload(image: &str) -> (Workload, Vec<Found>) {
        workload(WorkloadKind::Deployment, Some(1), image)
    }

    #[test]
    fn v2_and_v1_specs_read_alike() {
        let v2 = spec(
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bk"},
            "minReplicas": 1, "maxReplicas": 4, "metrics": [{"type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}),
        );
        let v1 = spec(
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bk"},
            "maxReplicas": 4, "targetCPUUtilizationPercentage": 80}),
        );
        assert_eq!(v1, v2);
        assert_eq!(target(&v2), Some((WorkloadKind::Deployment, "bk")));
    }

    #[test]
    fn custom_resource_targets_are_not_looked_up() {
        let s = spec(
            json!({"scaleTargetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "r"},
            "maxReplicas": 4}),
        );
        assert_eq!(target(&s), None);
        let s = spec(
            json!({"scaleTargetRef": {"apiVersion": "example.com/v1", "kind": "Deployment", "name": "r"},
            "maxReplicas": 4}),
        );
        assert_eq!(target(&s), None);
    }

    #[test]
    fn rejects_autoscaler_of_buildkitd_with_max_above_one() {
        let s = spec(
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bk"},
            "maxReplicas": 5}),
        );
        let (w, found) = target_workload("earthly/buildkitd");
        let d = demand("HorizontalPodAutoscaler ci/bk", &s, &w, &found).expect("demand");
        assert_eq!(d.rule, RuleId::BuildkitdAutoscaler);
        assert_eq!(
            d.single().message,
            "earthly/buildkitd does not support multi-node setups: HorizontalPodAutoscaler ci/bk \
             may scale Deployment ci/bk up to 5 replicas. Set maxReplicas: 1 (or remove the \
             autoscaler), or enable sticky multi-instance mode and front it with a Service using \
             sessionAffinity: ClientIP."
        );
    }

    #[test]
    fn accepts_autoscaler_with_max_one() {
        let s =
            spec(json!({"scaleTargetRef": {"kind": "Deployment", "name": "bk"}, "maxReplicas": 1}));
        let (w, found) = target_workload("earthly/buildkitd");
        assert_eq!(
            demand("HorizontalPodAutoscaler ci/bk", &s, &w, &found),
            None
        );
    }

    #[test]
    fn accepts_autoscaler_of_unrelated_workload() {
        let s = spec(
            json!({"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 50}),
        );
        let (w, found) = target_workload("nginx");
        assert_eq!(
            demand("HorizontalPodAutoscaler ci/web", &s, &w, &found),
            None
        );
    }
}
