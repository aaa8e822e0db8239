//! Judging one namespace: the objects read from it go through `check`'s pipeline (the
//! AdmissionRequests the apiserver would send for them, reviewed by the server's own `review`
//! function), with every lookup answered from what was read in that namespace. Nothing here
//! decides policy.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::findings::{self, Findings};
use super::scope::Target;
use crate::check::input::{Object, Origin};
use crate::check::lookups::workload_of;
use crate::check::template::template_path;
use crate::check::{InputCluster, ObjectReport, Outcome, check_objects};
use crate::cluster::MemoryCluster;
use crate::config::Mode;
use crate::review::Policy;
use k8s_openapi::api::core::v1::{Pod, Service};

/// What the audit found about one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Audited {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    #[serde(skip)]
    pub uid: Option<String>,
    /// The namespace's policy mode.
    pub mode: Mode,
    /// What the webhook would answer in that mode, were the object created now (as `check`).
    pub verdict: Outcome,
    /// The warnings the webhook would send in that mode (as `check`).
    pub warnings: Vec<String>,
    /// Violations (with rule ids), other warnings and the mutation, whatever the mode.
    pub findings: Findings,
}

impl Audited {
    /// `Kind namespace/name`.
    pub fn object_ref(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The kind of the controller owning `obj`, if any.
fn controller_kind(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| r.get("kind")?.as_str())
}

/// Whether the object is judged itself. A controller's pods are judged through its template,
/// a Deployment's ReplicaSets through the Deployment and a CronJob's Jobs through the CronJob,
/// so one broken template is one finding, not one per copy. Pods of a controller the audit does
/// not read (an operator's custom resource) are judged themselves, or nothing would judge them.
pub fn is_judged(obj: &Value) -> bool {
    !matches!(
        (
            obj.get("kind").and_then(Value::as_str),
            controller_kind(obj),
        ),
        (
            Some("Pod"),
            Some("ReplicaSet" | "StatefulSet" | "DaemonSet" | "ReplicationController" | "Job")
        ) | (Some("ReplicaSet"), Some("Deployment"))
            | (Some("Job"), Some("CronJob"))
    )
}

/// An object read from the cluster, as `check` reads one from a file.
fn to_object(value: Value, namespace: &str, item: usize) -> (Object, Option<String>) {
    let text = |k: &str| {
        value
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let object = Object {
        origin: Origin {
            file: format!("namespace {namespace}"),
            document: 1,
            item: Some(item),
            helm_source: None,
            line: None,
        },
        api_version: text("apiVersion"),
        kind: text("kind"),
        // Unreadable metadata makes the review itself fail, with a message naming the field.
        metadata: value
            .get("metadata")
            .and_then(|m| serde_json::from_value(m.clone()).ok())
            .unwrap_or_default(),
        value,
        // Read from the API, not a file: no lines to point at.
        lines: Default::default(),
    };
    (object, Some(namespace.to_owned()))
}

/// The namespace as the rules' lookups see it: everything read from it, as it is now (every
/// pod, controller-owned or not, so a Service is judged by the pods really behind it).
fn cluster_of(target: &Target, objects: &[(Object, Option<String>)]) -> MemoryCluster {
    let mut view = MemoryCluster {
        namespaces: BTreeMap::from([(target.name.clone(), target.labels.clone())]),
        ..MemoryCluster::default()
    };
    for (obj, _) in objects {
        match (obj.api_version.as_str(), obj.kind.as_str()) {
            ("v1", "Pod") => view
                .pods
                .extend(serde_json::from_value::<Pod>(obj.value.clone())),
            ("v1", "Service") => view
                .services
                .extend(serde_json::from_value::<Service>(obj.value.clone())),
            _ => view.workloads.extend(workload_of(obj, &target.name)),
        }
    }
    view
}

/// The objects read from a namespace, as `check` reads them from a file, split into the
/// cluster they make up and the ones judged.
pub fn prepare(
    target: &Target,
    items: Vec<Value>,
) -> (MemoryCluster, Vec<(Object, Option<String>)>) {
    let all: Vec<(Object, Option<String>)> = items
        .into_iter()
        .enumerate()
        .map(|(i, v)| to_object(v, &target.name, i + 1))
        .collect();
    let cluster = cluster_of(target, &all);
    let judged = all
        .into_iter()
        .filter(|(o, _)| is_judged(&o.value))
        .collect();
    (cluster, judged)
}

async fn run(
    policy: &Policy,
    cluster: &MemoryCluster,
    objects: &[(Object, Option<String>)],
    mode: Mode,
) -> Vec<ObjectReport> {
    let view = InputCluster::existing(cluster.clone());
    check_objects(policy, objects, Some(mode), view).await
}

/// Judges the objects read from one namespace. The reviews run in the namespace's mode (the
/// verdict and warnings the webhook would give) and, unless that is `audit` already, again in
/// audit mode, where each violation comes with its rule id and nothing stops at the first one.
pub async fn judge_namespace(policy: &Policy, target: &Target, items: Vec<Value>) -> Vec<Audited> {
    let (cluster, objects) = prepare(target, items);
    let as_webhook = run(policy, &cluster, &objects, target.mode).await;
    let audit_pass = if target.mode == Mode::Audit {
        None
    } else {
        Some(run(policy, &cluster, &objects, Mode::Audit).await)
    };
    let audit_reports = audit_pass.as_ref().unwrap_or(&as_webhook);
    objects
        .iter()
        .zip(&as_webhook)
        .zip(audit_reports)
        .map(|(((obj, _), webhook), audit)| Audited {
            api_version: obj.api_version.clone(),
            kind: obj.kind.clone(),
            namespace: target.name.clone(),
            name: webhook.name.clone(),
            uid: obj.metadata.uid.clone(),
            mode: target.mode,
            verdict: webhook.verdict,
            warnings: webhook.warnings.clone(),
            findings: findings::findings(
                policy,
                &obj.value,
                template_path(&obj.api_version, &obj.kind),
                audit,
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owned(kind: &str, owner: &str) -> Value {
        json!({"kind": kind, "metadata": {"name": "x", "ownerReferences": [
            {"kind": owner, "name": "o", "controller": true, "apiVersion": "v1", "uid": "u"}]}})
    }

    #[test]
    fn controller_owned_copies_are_judged_through_their_controller() {
        assert!(!is_judged(&owned("Pod", "ReplicaSet")));
        assert!(!is_judged(&owned("Pod", "Job")));
        assert!(!is_judged(&owned("ReplicaSet", "Deployment")));
        assert!(!is_judged(&owned("Job", "CronJob")));
    }

    #[test]
    fn bare_and_standalone_objects_are_judged() {
        assert!(is_judged(
            &json!({"kind": "Pod", "metadata": {"name": "p"}})
        ));
        assert!(is_judged(&owned("ReplicaSet", "SomethingElse")));
        assert!(is_judged(&owned("Job", "Workflow")));
        assert!(is_judged(&owned("Pod", "Workflow")));
        let not_controller = json!({"kind": "Pod", "metadata": {"name": "p", "ownerReferences": [
            {"kind": "ReplicaSet", "name": "o", "apiVersion": "apps/v1", "uid": "u"}]}});
        assert!(is_judged(&not_controller));
    }
}
