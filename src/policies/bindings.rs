//! The bindings: one per policy and per-namespace mode, selecting namespaces exactly as the
//! chart's webhook entries do (the opt-in label, the mode label, the excluded namespaces, the
//! per-object opt-out label).

use serde_json::{Value, json};

use crate::config::Mode;

/// The selection the webhook configurations use; the defaults are the chart's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Namespace label (key, value) that opts a namespace in.
    pub opt_in: (String, String),
    /// Namespace label naming the mode of an opted-in namespace.
    pub mode_label: String,
    /// Object label (key, value) that opts one object out.
    pub opt_out: (String, String),
    /// Namespaces never judged (the webhook's own, `kube-system`, ...).
    pub exclude_namespaces: Vec<String>,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            opt_in: ("earthly.dev/webhook".to_owned(), "enabled".to_owned()),
            mode_label: "earthly.dev/policy".to_owned(),
            opt_out: ("earthly.dev/webhook".to_owned(), "disabled".to_owned()),
            exclude_namespaces: vec!["kube-system".to_owned()],
        }
    }
}

/// The `validationActions` of a mode: what the webhook does with a violation in it.
pub fn actions(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "Deny",
        Mode::Warn => "Warn",
        Mode::Audit => "Audit",
    }
}

/// The modes a namespace label names, and `None` for opted-in namespaces without (a valid) one,
/// which get `policy.defaultMode`.
pub const LABELLED: [Mode; 3] = [Mode::Enforce, Mode::Warn, Mode::Audit];

/// The `matchResources` of a binding for namespaces labelled `mode` (`None`: unlabelled).
pub fn match_resources(selection: &Selection, mode: Option<Mode>) -> Value {
    let modes: Vec<&str> = LABELLED.iter().map(|m| m.as_str()).collect();
    let mode_expression = match mode {
        Some(m) => json!({"key": selection.mode_label, "operator": "In", "values": [m.as_str()]}),
        None => json!({"key": selection.mode_label, "operator": "NotIn", "values": modes}),
    };
    let mut excluded = selection.exclude_namespaces.clone();
    excluded.sort();
    excluded.dedup();
    json!({
        "namespaceSelector": {"matchExpressions": [
            {"key": selection.opt_in.0, "operator": "In", "values": [selection.opt_in.1]},
            mode_expression,
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excluded},
        ]},
        "objectSelector": {"matchExpressions": [
            {"key": selection.opt_out.0, "operator": "NotIn", "values": [selection.opt_out.1]},
        ]},
    })
}

/// Every binding of a policy: one per labelled mode and one for unlabelled namespaces.
/// `kind` is `ValidatingAdmissionPolicyBinding` or `MutatingAdmissionPolicyBinding`; `actions`
/// gives a binding's extra spec fields for its mode.
pub fn bindings(
    policy: &str,
    api_version: &str,
    kind: &str,
    selection: &Selection,
    default_mode: Mode,
    extra: impl Fn(Mode) -> Value,
) -> Vec<Value> {
    LABELLED
        .iter()
        .map(|m| (Some(*m), *m, m.as_str()))
        .chain([(None, default_mode, "default")])
        .map(|(label, mode, suffix)| {
            let mut spec = json!({
                "policyName": policy,
                "matchResources": match_resources(selection, label),
            });
            if let (Some(s), Value::Object(more)) = (spec.as_object_mut(), extra(mode)) {
                s.extend(more);
            }
            json!({
                "apiVersion": api_version,
                "kind": kind,
                "metadata": {
                    "name": format!("{policy}-{suffix}"),
                    "labels": {"app.kubernetes.io/managed-by": "earthly-webhook-policies"},
                },
                "spec": spec,
            })
        })
        .collect()
}

/// The bindings of a validating policy.
pub fn validating(policy: &str, selection: &Selection, default_mode: Mode) -> Vec<Value> {
    bindings(
        policy,
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        selection,
        default_mode,
        |mode| json!({"validationActions": [actions(mode)]}),
    )
}

/// A binding for every opted-in namespace whatever its mode, with `extra` spec fields.
fn every_mode(
    policy: &str,
    api_version: &str,
    kind: &str,
    selection: &Selection,
    extra: Value,
) -> Value {
    let mut m = match_resources(selection, None);
    if let Some(exprs) = m["namespaceSelector"]["matchExpressions"].as_array_mut() {
        // No mode label test: index 1 is the mode expression.
        exprs.remove(1);
    }
    let mut spec = json!({"policyName": policy, "matchResources": m});
    if let (Some(s), Value::Object(more)) = (spec.as_object_mut(), extra) {
        s.extend(more);
    }
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": policy,
            "labels": {"app.kubernetes.io/managed-by": "earthly-webhook-policies"},
        },
        "spec": spec,
    })
}

/// The binding of the mutating policy: the mutation is the same in every mode.
pub fn mutating(policy: &str, selection: &Selection) -> Value {
    every_mode(
        policy,
        "admissionregistration.k8s.io/v1beta1",
        "MutatingAdmissionPolicyBinding",
        selection,
        json!({}),
    )
}

/// The binding of a warnings policy: the webhook warns whatever the mode.
pub fn warnings(policy: &str, selection: &Selection) -> Value {
    every_mode(
        policy,
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        selection,
        json!({"validationActions": ["Warn"]}),
    )
}
