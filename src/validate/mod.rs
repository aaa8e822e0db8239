//! Validation rules, one file per resource family. Each rule is a pure function from objects
//! (and, where a rule needs the cluster, already looked-up facts) to [`Findings`]; the review
//! module turns findings into an answer according to the namespace's policy mode.

pub mod bare_pod;
pub mod buildkitd;
pub mod hpa;
pub mod pod;
pub mod pod_security;
pub mod scale;
pub mod service;
pub mod workload;

/// A broken rule: denied in `enforce` mode, a warning in `warn`, an audit annotation in `audit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Short machine name, used as the audit annotation key and a metrics label.
    pub rule: &'static str,
    /// The full message: what was found, and the ways out.
    pub message: String,
}

/// What validation found about one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Rules the object breaks.
    pub violations: Vec<Violation>,
    /// Footguns worth telling the user about, whatever the mode.
    pub warnings: Vec<String>,
}

impl Findings {
    /// Adds everything another set of findings holds.
    pub fn extend(&mut self, other: Findings) {
        self.violations.extend(other.violations);
        self.warnings.extend(other.warnings);
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

/// Helpers for the rules' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use serde_json::json;

    use crate::cluster::{Workload, WorkloadKind};
    use crate::config::Detection;
    use crate::detect::{Detector, Found};

    /// Workload `ci/bk` whose pod template (labels `app: bk`) runs one container of `image`,
    /// and what detection finds in that template.
    pub fn workload(
        kind: WorkloadKind,
        replicas: Option<i32>,
        image: &str,
    ) -> (Workload, Vec<Found>) {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "bk"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .expect("template");
        let found = Detector::new(&Detection::default())
            .expect("detector")
            .classify(None, template.spec.as_ref().expect("spec"))
            .expect("classify")
            .found;
        let w = Workload {
            kind,
            namespace: "ci".to_owned(),
            name: "bk".to_owned(),
            replicas,
            selector: None,
            template,
        };
        (w, found)
    }
}
