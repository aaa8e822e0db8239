//! One object through the reviews the apiserver would make for it (see [`super`]'s docs), and
//! what they answered.

use std::collections::BTreeMap;

use json_patch::{Patch, PatchOperation};
use kube::core::admission::AdmissionResponse;
use serde_json::Value;

use super::input::{self, Object};
use super::request::{Submission, review_object};
use super::template::{rebase_patch, template_path, template_pod};
use super::{DEFAULT_NAMESPACE, ObjectReport, Outcome};
use crate::cluster::MemoryCluster;
use crate::config::Mode;
use crate::review::{Action, Policy, Route};
use crate::rules::{RuleId, Violation};

/// The reviews made for one object, and what they answered.
struct Reviews<'a> {
    policy: &'a Policy,
    cluster: &'a MemoryCluster,
    mode: Option<Mode>,
    warnings: Vec<String>,
    warned: Vec<RuleId>,
    denials: Vec<String>,
    violations: Vec<Violation>,
    audit_annotations: BTreeMap<String, String>,
    /// The patch so far, against the object as written.
    patch: Vec<PatchOperation>,
    patch_operations: BTreeMap<String, usize>,
}

impl<'a> Reviews<'a> {
    fn new(policy: &'a Policy, cluster: &'a MemoryCluster, mode: Option<Mode>) -> Self {
        Self {
            policy,
            cluster,
            mode,
            warnings: Vec::new(),
            warned: Vec::new(),
            denials: Vec::new(),
            violations: Vec::new(),
            audit_annotations: BTreeMap::new(),
            patch: Vec::new(),
            patch_operations: BTreeMap::new(),
        }
    }

    /// Sends `object` to `action` and records the answer. Returns the patch (against `object`,
    /// empty when there is none) when the object was admitted, `None` when it was refused.
    async fn send(
        &mut self,
        action: Action,
        object: &Value,
        namespace: Option<&str>,
    ) -> Option<Patch> {
        let route = Route {
            action,
            mode: self.mode,
        };
        let submission = Submission::create(object, namespace);
        let reviewed = match review_object(self.policy, self.cluster, route, &submission).await {
            Ok(r) => r,
            Err(e) => {
                self.denials.push(e.to_string());
                return None;
            }
        };
        let response: &AdmissionResponse = reviewed.response();
        self.warnings
            .extend(response.warnings.iter().flatten().cloned());
        self.warned.extend(&reviewed.summary.warned);
        self.audit_annotations.extend(
            response
                .audit_annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        self.violations
            .extend(reviewed.summary.violations.iter().cloned());
        if !response.allowed {
            self.denials.push(response.result.message.clone());
            if reviewed.summary.violations.is_empty() {
                self.violations_of_denial(action, object, namespace).await;
            }
            return None;
        }
        for (rule, n) in &reviewed.summary.patch_operations {
            *self
                .patch_operations
                .entry(rule.as_str().to_owned())
                .or_default() += n;
        }
        match &response.patch {
            None => Some(Patch::default()),
            Some(bytes) => match serde_json::from_slice::<Patch>(bytes) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.denials.push(format!(
                        "the webhook returned a patch that is not a JSON patch: {e}"
                    ));
                    None
                }
            },
        }
    }
}

impl Reviews<'_> {
    /// `enforce` answers a denial with the joined messages only; the same review in `audit`
    /// mode records each violation with its rule id, which the SARIF and JUnit outputs need.
    async fn violations_of_denial(
        &mut self,
        action: Action,
        object: &Value,
        namespace: Option<&str>,
    ) {
        let route = Route {
            action,
            mode: Some(Mode::Audit),
        };
        let submission = Submission::create(object, namespace);
        if let Ok(r) = review_object(self.policy, self.cluster, route, &submission).await {
            self.violations.extend(r.summary.violations);
        }
    }
}

/// Runs one object through the reviews the apiserver would make (see the module docs).
pub(super) async fn check_object(
    policy: &Policy,
    cluster: &MemoryCluster,
    mode: Option<Mode>,
    obj: &Object,
    namespace: Option<&str>,
) -> ObjectReport {
    let mut reviews = Reviews::new(policy, cluster, mode);
    if obj.api_version == "v1" && obj.kind == "Pod" {
        if let Some(patch) = reviews.send(Action::Mutate, &obj.value, namespace).await {
            let mut pod = obj.value.clone();
            match json_patch::patch(&mut pod, &patch) {
                Ok(()) => {
                    reviews.patch.extend(patch.0);
                    reviews.send(Action::Validate, &pod, namespace).await;
                }
                Err(e) => reviews
                    .denials
                    .push(format!("the webhook's patch does not apply: {e}")),
            }
        }
    } else {
        let admitted = reviews
            .send(Action::Validate, &obj.value, namespace)
            .await
            .is_some();
        let pod_namespace = namespace.unwrap_or(DEFAULT_NAMESPACE);
        if admitted
            && let Some(path) = template_path(&obj.api_version, &obj.kind)
            && let Some(pod) = template_pod(obj, path, pod_namespace)
            && let Some(patch) = reviews
                .send(Action::Mutate, &pod, Some(pod_namespace))
                .await
        {
            let template = obj.value.pointer(path).unwrap_or(&Value::Null);
            match rebase_patch(patch, path, template) {
                Ok(p) => reviews.patch.extend(p.0),
                Err(e) => reviews.denials.push(e),
            }
        }
    }

    let patch = Patch(reviews.patch);
    let mut mutated = obj.value.clone();
    if let Err(e) = json_patch::patch(&mut mutated, &patch) {
        reviews.denials.push(format!(
            "the webhook's patch does not apply to the manifest: {e}"
        ));
        mutated = obj.value.clone();
    }
    let verdict = if !reviews.denials.is_empty() {
        Outcome::Denied
    } else if !patch.0.is_empty() {
        Outcome::Mutated
    } else {
        Outcome::Allowed
    };
    let name = input::name_of(&obj.metadata);
    tracing::debug!(
        kind = %obj.kind,
        namespace = namespace.unwrap_or(""),
        name = %name,
        verdict = verdict.as_str(),
        "checked"
    );
    ObjectReport {
        origin: obj.origin.clone(),
        api_version: obj.api_version.clone(),
        kind: obj.kind.clone(),
        namespace: namespace.map(str::to_owned),
        name,
        verdict,
        warnings: reviews.warnings,
        warned: reviews.warned,
        denials: reviews.denials,
        audit_annotations: reviews.audit_annotations,
        violations: reviews.violations,
        lines: obj.lines.clone(),
        patch_operations: if patch.0.is_empty() {
            BTreeMap::new()
        } else {
            reviews.patch_operations
        },
        patch,
        mutated,
    }
}
