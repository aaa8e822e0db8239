//! ReplicationControllers (core `v1`, the ReplicaSet's predecessor, still served): one whose pod
//! template runs buildkitd and asks for more than one replica runs several buildkitd behind one
//! address, as a Deployment would. Judged like the `apps` workloads: the replica count, and the
//! template's warnings for whoever applies it. Their selector is a plain label map, which is
//! why they are not read as an `apps` workload (and the rules here do not read it).

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::Operation;
use serde::Deserialize;

use super::instances::judge_template;
use super::lookups::{Lookups, Stop, nothing};
use super::workload::replicas_demand;
use super::{Context, Input, Judgement, Rule, object_ref};

/// ReplicationControllers being created or updated.
pub struct ReplicationControllers;

/// A ReplicationController as the rule reads it.
#[derive(Deserialize)]
pub struct Object {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<Spec>,
}

#[derive(Deserialize)]
struct Spec {
    #[serde(default)]
    replicas: Option<i32>,
    #[serde(default)]
    template: Option<PodTemplateSpec>,
}

impl Rule for ReplicationControllers {
    type Object = Object;

    async fn review(&self, cx: &Context<'_>, input: Input<'_, Object>) -> Result<Judgement, Stop> {
        let obj = input.object()?;
        if obj.metadata.deletion_timestamp.is_some() {
            return nothing();
        }
        let Some(spec) = obj.spec.as_ref() else {
            return nothing();
        };
        // Only a change of the replica count or the template is judged again, as for the
        // `apps` workloads (controllers write status and metadata all the time).
        if input.request.operation == Operation::Update
            && let Some(old) = input.old_object.and_then(|o| o.spec.as_ref())
            && old.replicas.unwrap_or(1) == spec.replicas.unwrap_or(1)
            && old.template == spec.template
        {
            return nothing();
        }
        let Some(template) = spec.template.as_ref() else {
            return nothing();
        };
        let kind = "ReplicationController";
        let subject = object_ref(kind, input.request.namespace.as_deref(), &obj.metadata);
        let lookups = Lookups::new(cx, &subject);
        let at = Some("spec.template.spec");
        judge_template(cx, &lookups, input.namespace(), template, at, |found| {
            replicas_demand(&subject, spec.replicas, found)
        })
        .await
        .map(Judgement::from)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSpec;
    use serde_json::json;

    use super::*;
    use crate::config::Detection;
    use crate::detect::Detector;
    use crate::detect::Found;
    use crate::rules::RuleId;

    fn found(image: &str) -> Vec<Found> {
        let spec: PodSpec =
            serde_json::from_value(json!({"containers": [{"name": "c", "image": image}]}))
                .expect("spec");
        Detector::new(&Detection::default())
            .expect("detector")
            .classify(None, &spec)
            .expect("classify")
            .found
    }

    #[test]
    fn several_buildkitd_replicas_are_a_demand() {
        let d = replicas_demand(
            "ReplicationController ci/bk",
            Some(3),
            &found("earthly/buildkitd:v0.8.15"),
        )
        .expect("demand");
        assert_eq!(d.rule, RuleId::BuildkitdReplicas);
        assert_eq!(d.found, "ReplicationController ci/bk asks for 3 replicas");
    }

    #[test]
    fn one_replica_or_no_buildkitd_is_none() {
        let bk = found("earthly/buildkitd:v0.8.15");
        assert!(replicas_demand("ReplicationController ci/bk", None, &bk).is_none());
        assert!(replicas_demand("ReplicationController ci/bk", Some(1), &bk).is_none());
        assert!(
            replicas_demand("ReplicationController ci/web", Some(3), &found("nginx")).is_none()
        );
    }
}
