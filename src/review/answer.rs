//! The answer being built: the request's uid, the mode applied to what the rules found, the
//! patch, and the summary logs and metrics read.

use std::collections::BTreeMap;

use kube::core::admission::{AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, TypeMeta};

use super::wire::{ADMISSION_API_VERSION, ADMISSION_KIND};
use crate::config::Mode;
use crate::envelope::Request;
use crate::mutate::Mutation;
use crate::rules::{Findings, RuleId, Violation};

/// How a review ended, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Verdict {
    Allowed,
    Mutated,
    Denied,
    /// The object could not be read.
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What happened, in fields for logs, metrics and the `check` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub uid: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub operation: &'static str,
    pub dry_run: bool,
    pub verdict: Verdict,
    /// Patch operations per mutation rule.
    pub patch_operations: Vec<(RuleId, usize)>,
    /// Violations the mode let through (warn) or recorded (audit).
    pub violations: Vec<Violation>,
    /// The rule of each of the response's warnings, in their order.
    pub warned: Vec<RuleId>,
}

/// A finished review: the answer to send, and its summary.
#[derive(Debug, Clone)]
pub struct Reviewed {
    pub review: AdmissionReview<DynamicObject>,
    pub summary: Summary,
}

impl Reviewed {
    /// The answer as the apiserver expects it on the wire.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        super::wire::to_wire_json(&self.review)
    }

    /// The response inside the review.
    pub fn response(&self) -> &AdmissionResponse {
        // `finish` always sets it.
        self.review
            .response
            .as_ref()
            .expect("a Reviewed always holds a response")
    }
}

impl Reviewed {
    /// A review whose request could not be read at all, answered by uid only.
    pub(crate) fn unreadable(response: AdmissionResponse, uid: String) -> Self {
        Reviewed {
            review: response.into_review(),
            summary: Summary {
                uid,
                kind: String::new(),
                namespace: None,
                name: String::new(),
                operation: "",
                dry_run: false,
                verdict: Verdict::Error,
                patch_operations: Vec::new(),
                violations: Vec::new(),
                warned: Vec::new(),
            },
        }
    }
}

fn operation_str(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// A fresh response to `uid`: allowed, no patch.
fn allowed(uid: &str) -> AdmissionResponse {
    let mut r = AdmissionResponse::invalid("");
    r.types = TypeMeta {
        api_version: ADMISSION_API_VERSION.to_owned(),
        kind: ADMISSION_KIND.to_owned(),
    };
    r.uid = uid.to_owned();
    r.allowed = true;
    r.result = Default::default();
    r
}

/// The answer being built.
pub(super) struct Answer {
    response: AdmissionResponse,
    summary: Summary,
    warnings: Vec<String>,
}

impl Answer {
    /// Applies findings according to the mode.
    pub(super) fn apply(&mut self, findings: Findings, mode: Mode) {
        for w in findings.warnings {
            self.warn(w.rule, w.message);
        }
        if findings.violations.is_empty() {
            return;
        }
        for v in &findings.violations {
            if mode != Mode::Enforce {
                tracing::info!(
                    uid = %self.summary.uid,
                    namespace = self.summary.namespace.as_deref().unwrap_or(""),
                    name = %self.summary.name,
                    kind = %self.summary.kind,
                    rule = v.rule.as_str(),
                    mode = mode.as_str(),
                    message = %v.message,
                    "policy violation admitted"
                );
            }
        }
        match mode {
            Mode::Enforce => {
                let message = findings
                    .violations
                    .iter()
                    .map(|v| v.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                self.deny(message);
            }
            Mode::Warn => {
                for v in &findings.violations {
                    self.warn(v.rule, v.message.clone());
                }
                self.summary.violations = findings.violations;
            }
            Mode::Audit => {
                for v in &findings.violations {
                    // One key per rule: a rule broken twice keeps both messages.
                    self.response
                        .audit_annotations
                        .entry(v.rule.as_str().to_owned())
                        .and_modify(|m| {
                            m.push_str("; ");
                            m.push_str(&v.message);
                        })
                        .or_insert_with(|| v.message.clone());
                }
                self.summary.violations = findings.violations;
            }
        }
    }

    fn warn(&mut self, rule: RuleId, message: String) {
        self.warnings.push(message);
        self.summary.warned.push(rule);
    }

    pub(super) fn deny(&mut self, message: String) {
        // A denial drops the patch: nothing is created, so nothing is mutated.
        let mut denied = AdmissionResponse::from_parts_of(&self.response).deny(message);
        denied.result.code = 403;
        denied.result.reason = "Forbidden".to_owned();
        self.response = denied;
        self.summary.verdict = Verdict::Denied;
        self.summary.patch_operations.clear();
    }

    /// The object could not be read: refuse it, saying what is wrong.
    pub(super) fn fail(&mut self, message: String) {
        let mut failed = AdmissionResponse::from_parts_of(&self.response).deny(message);
        failed.result.code = 400;
        failed.result.reason = "BadRequest".to_owned();
        self.response = failed;
        self.summary.verdict = Verdict::Error;
        self.summary.patch_operations.clear();
    }

    pub(super) fn finish(mut self) -> Reviewed {
        if !self.warnings.is_empty() {
            self.response.warnings = Some(self.warnings);
        }
        Reviewed {
            review: self.response.into_review(),
            summary: self.summary,
        }
    }
}

impl Answer {
    /// The answer to `request`, allowed until something says otherwise.
    pub(super) fn new<O>(request: &Request<O>) -> Self {
        Answer {
            response: allowed(&request.uid),
            summary: Summary {
                uid: request.uid.clone(),
                kind: request.kind().to_owned(),
                namespace: request.namespace.clone(),
                name: request.name.clone(),
                operation: operation_str(&request.operation),
                dry_run: request.dry_run,
                verdict: Verdict::Allowed,
                patch_operations: Vec::new(),
                violations: Vec::new(),
                warned: Vec::new(),
            },
            warnings: Vec::new(),
        }
    }

    /// Adds a mutation: its patch, and a warning per change so `kubectl` users see it.
    pub(super) fn mutate(&mut self, m: Mutation) -> Result<(), String> {
        let mut per_rule: BTreeMap<RuleId, usize> = BTreeMap::new();
        for c in &m.changes {
            *per_rule.entry(c.rule).or_default() += c.operations;
            self.warn(c.rule, c.message.clone());
        }
        self.response = self
            .response
            .clone()
            .with_patch(m.patch)
            .map_err(|e| format!("cannot encode the patch for {}: {e}", self.summary.name))?;
        self.summary.verdict = Verdict::Mutated;
        self.summary.patch_operations = per_rule.into_iter().collect();
        Ok(())
    }
}

trait FromPartsOf {
    /// A fresh response with the same uid and types as `other`, allowed, without patch.
    fn from_parts_of(other: &AdmissionResponse) -> AdmissionResponse;
}

impl FromPartsOf for AdmissionResponse {
    fn from_parts_of(other: &AdmissionResponse) -> AdmissionResponse {
        let mut fresh = allowed(&other.uid);
        fresh.types = other.types.clone();
        fresh.audit_annotations = other.audit_annotations.clone();
        fresh
    }
}
