//! What an audit says about one object: violations with their rule ids, warnings, and the
//! mutation the webhook would apply, said in a sentence per container. Pure functions over the
//! object and the `check` report of it.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::Value;

use crate::check::ObjectReport;
use crate::detect::Role;
use crate::mutate::{self, Rule};
use crate::review::Policy;

/// A rule the object breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The rule id (the audit annotation key and metrics label the webhook uses).
    pub rule: String,
    pub message: String,
}

/// Everything found about one object, whatever the namespace's mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Findings {
    pub violations: Vec<Violation>,
    /// Warnings that are neither violations nor the mutation.
    pub warnings: Vec<String>,
    /// What the webhook would change in the object's pods.
    pub mutations: Vec<String>,
    /// Why the object could not be judged (it cannot be read as its kind).
    pub errors: Vec<String>,
}

impl Findings {
    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
            && self.warnings.is_empty()
            && self.mutations.is_empty()
            && self.errors.is_empty()
    }
}

/// Short role names for sentences ("runner earthly in Job ci/nightly ...").
fn role_name(role: Role) -> &'static str {
    match role {
        Role::AllInOne => "runner",
        Role::Buildkitd => "buildkitd",
        Role::Client => "client",
    }
}

/// What one container lacks, from the changes the mutation makes to it.
fn lack(changes: &[mutate::Change], scratch: &str) -> String {
    let has = |rule| changes.iter().any(|c| c.rule == rule);
    if has(Rule::Privileged) {
        "is not privileged".to_owned()
    } else if has(Rule::ScratchVolume) {
        format!("has no scratch volume at {scratch}")
    } else {
        "has no CNI_MTU".to_owned()
    }
}

/// The mutation of a pod spec in sentences, one per container that changes, and the webhook's
/// own change messages (which it sends as warnings). `subject` names the object (`Job ci/a`).
pub fn mutation_sentences(
    policy: &Policy,
    subject: &str,
    meta: Option<&ObjectMeta>,
    spec: &PodSpec,
) -> (Vec<String>, Vec<String>) {
    let Ok(found) = policy
        .detector()
        .classify(meta.and_then(|m| m.annotations.as_ref()), spec)
    else {
        return (Vec::new(), Vec::new());
    };
    let config = &policy.config().mutation;
    let all = mutate::mutate(spec, "/spec", &found, config);
    let messages = all.changes.iter().map(|c| c.message.clone()).collect();
    let mut sentences = Vec::new();
    for f in found.iter().filter(|f| f.role.needs_privileges()) {
        let one = mutate::mutate(spec, "/spec", std::slice::from_ref(f), config);
        let container = f.container(spec);
        let scratch = container
            .map(|c| mutate::scratch_path(c, f.family).0)
            .unwrap_or_default();
        let mut clauses = Vec::new();
        for c in &one.changes {
            match c.rule {
                Rule::Privileged => clauses.push("set privileged".to_owned()),
                Rule::ScratchVolume => {
                    clauses.push(format!("mount a scratch volume at {scratch}"));
                }
                Rule::CniMtu => clauses.push("set CNI_MTU".to_owned()),
                // Pod-wide placement is said once below, not per container; the other rules
                // are validation rules, which make no changes.
                _ => {}
            }
        }
        if clauses.is_empty() {
            continue;
        }
        sentences.push(format!(
            "{} {} in {subject} {}; the webhook would {}",
            role_name(f.role),
            f.name,
            lack(&one.changes, &scratch),
            clauses.join(" and ")
        ));
    }
    let placement: BTreeSet<&'static str> = all
        .changes
        .iter()
        .filter_map(|c| match c.rule {
            Rule::Toleration => Some("tolerations"),
            Rule::NodeSelector => Some("a node selector"),
            Rule::NodeAffinity => Some("a node affinity"),
            _ => None,
        })
        .collect();
    if !placement.is_empty() {
        sentences.push(format!(
            "{subject} does not run on the privileged nodes; the webhook would add {}",
            placement.into_iter().collect::<Vec<_>>().join(" and ")
        ));
    }
    (sentences, messages)
}

/// The pod spec (and its metadata) a Pod or a workload's template holds.
fn pod_parts(object: &Value, template: Option<&str>) -> Option<(Option<ObjectMeta>, PodSpec)> {
    let base = match template {
        Some(path) => object.pointer(path)?,
        None => object,
    };
    let spec = serde_json::from_value(base.get("spec")?.clone()).ok()?;
    let meta = base
        .get("metadata")
        .and_then(|m| serde_json::from_value(m.clone()).ok());
    Some((meta, spec))
}

/// The findings about `object` from `report`, its `check` report in audit mode (where
/// violations are audit annotations keyed by rule id, and nothing is denied for them).
/// `template` is where the object keeps its pod template (`None` for a Pod).
pub fn findings(
    policy: &Policy,
    object: &Value,
    template: Option<&str>,
    report: &ObjectReport,
) -> Findings {
    let (mutations, change_messages) = match pod_parts(object, template) {
        Some((meta, spec)) if !report.patch.0.is_empty() => {
            mutation_sentences(policy, &report.object_ref(), meta.as_ref(), &spec)
        }
        _ => (Vec::new(), Vec::new()),
    };
    Findings {
        violations: report
            .audit_annotations
            .iter()
            .map(|(rule, message)| Violation {
                rule: rule.clone(),
                message: message.clone(),
            })
            .collect(),
        warnings: report
            .warnings
            .iter()
            .filter(|w| !change_messages.contains(w))
            .cloned()
            .collect(),
        mutations,
        errors: report.denials.clone(),
    }
}
