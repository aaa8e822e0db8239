//! The policy, one module per resource family. Each family owns the type its objects are decoded
//! into (fields it does not list cannot be read), its decision, the lookups it needs and its
//! tests; [`registry`] maps what the apiserver sends to the family that judges it, and is the
//! only dispatch there is.
//!
//! A family is a [`Rule`]: its `Object` type and one `review` function. Adding one is a new
//! file, an `impl Rule`, and a line in [`registry::REGISTRY`].

use serde::de::{DeserializeOwned, IgnoredAny};

use crate::cluster::ClusterView;
use crate::envelope::Request;
use crate::mutate::Mutation;
use crate::policy::Policy;
pub use crate::rule_id::{RuleId, Warning};

mod bare_pod;
mod buildkitd;
mod fleet;
pub mod footguns;
mod hpa;
mod instances;
mod jobs;
mod lookups;
mod pod;
mod pod_security;
pub(crate) mod pod_spec;
pub mod registry;
mod replication;
mod rollout;
mod scale;
mod service;
mod skew;
mod sticky;
#[cfg(test)]
pub(crate) mod testing;
mod workload;

pub use lookups::{Lookups, Stop};

/// What a rule may use besides the request: the policy, and the cluster to ask.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub policy: &'a Policy,
    pub cluster: &'a dyn ClusterView,
}

/// A request as a rule sees it: the envelope's fields, and the objects decoded as `O`.
pub struct Input<'a, O> {
    pub request: &'a Request<IgnoredAny>,
    pub object: Option<&'a O>,
    pub old_object: Option<&'a O>,
}

impl<'a, O> Input<'a, O> {
    /// The namespace of the request (empty for cluster-scoped objects).
    pub fn namespace(&self) -> &'a str {
        self.request.namespace.as_deref().unwrap_or_default()
    }

    /// The object, or the message for a request that carries none.
    pub fn object(&self) -> Result<&'a O, Stop> {
        self.object.ok_or_else(|| {
            Stop::Unreadable(format!(
                "{} {}: the AdmissionReview request has no object",
                self.request.kind(),
                self.request.name
            ))
        })
    }
}

/// A family of objects and what the policy says about them.
pub trait Rule: Send + Sync + 'static {
    /// The object as this rule reads it. Decoded straight from the request body.
    type Object: DeserializeOwned + Send + Sync;

    /// Judges one request. [`Stop`] ends it early: an object that cannot be read (the message
    /// says where), or findings known before the end (a failed lookup). Implemented as an
    /// `async fn`; the registry's type erasure boxes the one future per review, so this one is
    /// not boxed again.
    fn review(
        &self,
        cx: &Context<'_>,
        input: Input<'_, Self::Object>,
    ) -> impl Future<Output = Result<Judgement, Stop>> + Send;
}

/// A broken rule: denied in `enforce` mode, a warning in `warn`, an audit annotation in `audit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: RuleId,
    /// The full message: what was found, and the ways out.
    pub message: String,
}

/// What validation found about one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Rules the object breaks.
    pub violations: Vec<Violation>,
    /// Footguns worth telling the user about, whatever the mode.
    pub warnings: Vec<Warning>,
}

impl Findings {
    /// Adds everything another set of findings holds.
    pub fn extend(&mut self, other: Findings) {
        self.violations.extend(other.violations);
        self.warnings.extend(other.warnings);
    }

    /// Adds a warning.
    pub fn warn(&mut self, rule: RuleId, message: String) {
        self.warnings.push(Warning::new(rule, message));
    }

    /// Findings with one violation.
    pub fn violation(rule: RuleId, message: String) -> Self {
        Findings {
            violations: vec![Violation { rule, message }],
            warnings: Vec::new(),
        }
    }
}

/// A rule's answer: findings, and for pods at `/mutate` the patch.
#[derive(Debug, Clone, Default)]
pub struct Judgement {
    pub findings: Findings,
    pub mutation: Option<Mutation>,
}

impl From<Findings> for Judgement {
    fn from(findings: Findings) -> Self {
        Judgement {
            findings,
            mutation: None,
        }
    }
}

/// How messages name an object: `Kind namespace/name`, with `generateName` + `*` for objects
/// the apiserver has not named yet.
pub fn object_ref(
    kind: &str,
    namespace: Option<&str>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> String {
    let name = match (&meta.name, &meta.generate_name) {
        (Some(n), _) if !n.is_empty() => n.clone(),
        (_, Some(g)) if !g.is_empty() => format!("{g}*"),
        _ => "(unnamed)".to_owned(),
    };
    match namespace.or(meta.namespace.as_deref()) {
        Some(ns) if !ns.is_empty() => format!("{kind} {ns}/{name}"),
        _ => format!("{kind} {name}"),
    }
}

/// The violation for an `earthly.dev/role` annotation detection cannot read.
pub(crate) fn role_annotation(object: &str, error: crate::detect::DetectError) -> Findings {
    Findings::violation(RuleId::RoleAnnotation, format!("{object}: {error}"))
}
