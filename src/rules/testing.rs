//! Helpers for the rules' unit tests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use serde_json::json;

use crate::cluster::{Workload, WorkloadKind};
use crate::config::Detection;
use crate::detect::{Detector, Found};

/// Workload `ci/bk` whose pod template (labels `app: bk`) runs one container of `image`,
/// and what detection finds in that template.
pub fn workload(kind: WorkloadKind, replicas: Option<i32>, image: &str) -> (Workload, Vec<Found>) {
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

/// Service `ci/bk` with `spec`.
pub fn service(spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": "bk", "namespace": "ci"}, "spec": spec}))
        .expect("service")
}

/// A label map from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
