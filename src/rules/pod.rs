//! Pods: the mutation at `/mutate` (with the Pod Security check that must come before the
//! apiserver's own), and at `/validate` the footgun warnings, the bare-pod rule and the version
//! skew of remote clients.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::core::admission::Operation;
use serde::{Deserialize, Deserializer};

use super::lookups::Stop;
use super::pod_spec::RuleSpec;
use super::{
    Context, Input, Judgement, Rule, bare_pod, footguns, object_ref, pod_security, role_annotation,
    skew,
};
use crate::detect::Classified;
use crate::mutate;

/// Pod CREATEs at `/mutate`.
pub struct Mutate;

/// Pod CREATEs and UPDATEs at `/validate`.
pub struct Validate;

/// A pod as the rules read it: its metadata without `managedFields`, and the fields of its spec
/// listed in [`RuleSpec`]. Its `status` is skipped unparsed.
#[derive(Deserialize)]
pub struct Object {
    #[serde(default, deserialize_with = "slim_meta")]
    metadata: ObjectMeta,
    #[serde(default, deserialize_with = "slim_spec")]
    spec: Option<Box<PodSpec>>,
}

/// `ObjectMeta` without `managedFields`, which is most of a pod's metadata and read by no rule.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

fn slim_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = Option::<Meta>::deserialize(d)?.unwrap_or_default();
    Ok(ObjectMeta {
        annotations: m.annotations,
        creation_timestamp: m.creation_timestamp,
        deletion_grace_period_seconds: m.deletion_grace_period_seconds,
        deletion_timestamp: m.deletion_timestamp,
        finalizers: m.finalizers,
        generate_name: m.generate_name,
        generation: m.generation,
        labels: m.labels,
        managed_fields: None,
        name: m.name,
        namespace: m.namespace,
        owner_references: m.owner_references,
        resource_version: m.resource_version,
        self_link: m.self_link,
        uid: m.uid,
    })
}

fn slim_spec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<PodSpec>>, D::Error> {
    Ok(Option::<RuleSpec>::deserialize(d)?.map(|s| Box::new(s.into())))
}

impl Object {
    /// The pod's name in messages, its spec, and what detection finds in it. A role annotation
    /// that cannot be read stops the review with its violation.
    fn classify(
        &self,
        cx: &Context<'_>,
        namespace: Option<&str>,
    ) -> Result<(String, &PodSpec, Classified), Stop> {
        let name = object_ref("Pod", namespace, &self.metadata);
        let Some(spec) = self.spec.as_deref() else {
            return Err(Stop::Unreadable(format!(
                "cannot read {name}: spec is missing"
            )));
        };
        let annotations = self.metadata.annotations.as_ref();
        match cx.policy.detector().classify(annotations, spec) {
            Ok(found) => Ok((name, spec, found)),
            Err(e) => Err(Stop::Done(role_annotation(&name, e))),
        }
    }
}

impl Rule for Mutate {
    type Object = Object;

    async fn review(&self, cx: &Context<'_>, input: Input<'_, Object>) -> Result<Judgement, Stop> {
        let namespace = input.request.namespace.as_deref();
        let (name, spec, found) = input.object()?.classify(cx, namespace)?;
        // Every container that needs privileges ends up privileged, whether the pod asked for it
        // or the patch adds it: either way Pod Security Admission would refuse the pod.
        let mut findings = pod_security::judge(cx, namespace, &name, &found).await;
        let mut m = mutate::mutate(spec, "/spec", &found, &cx.policy.config().mutation);
        // Where a role was assumed, and what the patch cannot fix: the person applying must know.
        findings.warnings.extend(found.notes);
        findings.warnings.append(&mut m.warnings);
        Ok(Judgement {
            findings,
            mutation: (!m.patch.0.is_empty()).then_some(m),
        })
    }
}

impl Rule for Validate {
    type Object = Object;

    async fn review(&self, cx: &Context<'_>, input: Input<'_, Object>) -> Result<Judgement, Stop> {
        let obj = input.object()?;
        let (name, spec, found) = obj.classify(cx, input.request.namespace.as_deref())?;
        let mut findings = footguns::check(&name, "spec", spec, &found);
        let old_labels = input.old_object.map(|o| o.metadata.labels.as_ref());
        let operation = &input.request.operation;
        let namespace = input.namespace();
        let meta = &obj.metadata;
        match bare_pod::judge(cx, namespace, operation, old_labels, &name, meta, &found).await {
            Ok(f) | Err(Stop::Done(f)) => findings.extend(f),
            Err(unreadable) => return Err(unreadable),
        }
        // The pods of workloads and Jobs were compared through their template.
        if *operation == Operation::Create && !skew::judged_through_template(meta) {
            match skew::judge(cx, namespace, &name, "spec", spec, &found).await {
                Ok(f) | Err(Stop::Done(f)) => findings.extend(f),
                Err(unreadable) => return Err(unreadable),
            }
        }
        Ok(findings.into())
    }
}
