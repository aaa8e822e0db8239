//! Which pods count as a running buildkitd, for the rules that look at existing pods.

use k8s_openapi::api::core::v1::Pod;

use crate::detect::{Detector, Family, Found, Role};

/// The family of the first buildkitd container detection found (Earthly when none).
pub fn daemon(found: &[Found]) -> Family {
    found
        .iter()
        .find(|f| f.role == Role::Buildkitd)
        .map_or(Family::Earthly, |f| f.family)
}

/// Whether detection found a buildkitd container.
pub fn runs_buildkitd(found: &[Found]) -> bool {
    found.iter().any(|f| f.role == Role::Buildkitd)
}

/// Whether a pod still runs or is about to: not being deleted, and not finished.
pub fn is_live(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// Whether an existing pod is a live buildkitd. A pod whose role annotations cannot be read
/// counts by its images alone: the mutating webhook would have refused it, so it predates us.
pub fn is_live_buildkitd(detector: &Detector, pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    if !is_live(pod) {
        return false;
    }
    match detector.classify(pod.metadata.annotations.as_ref(), spec) {
        Ok(found) => runs_buildkitd(&found),
        Err(_) => spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| detector.container_role(c) == Some(Role::Buildkitd)),
    }
}

/// `Pod ns/name`, as messages name an existing pod.
pub fn pod_ref(pod: &Pod) -> String {
    super::object_ref("Pod", None, &pod.metadata)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Detection;
    use serde_json::json;

    fn detector() -> Detector {
        Detector::new(&Detection::default()).expect("detector")
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn finished_and_terminating_pods_are_not_live() {
        let spec = json!({"containers": [{"name": "b", "image": "earthly/buildkitd"}]});
        let running = pod(json!({"metadata": {"name": "a"}, "spec": spec}));
        let done =
            pod(json!({"metadata": {"name": "a"}, "spec": spec, "status": {"phase": "Succeeded"}}));
        let failed =
            pod(json!({"metadata": {"name": "a"}, "spec": spec, "status": {"phase": "Failed"}}));
        let going = pod(
            json!({"metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec}),
        );
        assert!(is_live_buildkitd(&detector(), &running));
        for p in [done, failed, going] {
            assert!(!is_live_buildkitd(&detector(), &p));
        }
    }

    #[test]
    fn pod_with_unreadable_role_annotation_counts_by_image() {
        let p = pod(
            json!({"metadata": {"name": "a", "annotations": {"earthly.dev/role": "boss"}},
            "spec": {"containers": [{"name": "b", "image": "earthly/buildkitd"}]}}),
        );
        assert!(is_live_buildkitd(&detector(), &p));
    }

    #[test]
    fn pod_annotated_none_is_not_buildkitd() {
        let p = pod(
            json!({"metadata": {"name": "a", "annotations": {"earthly.dev/role": "none"}},
            "spec": {"containers": [{"name": "b", "image": "earthly/buildkitd"}]}}),
        );
        assert!(!is_live_buildkitd(&detector(), &p));
    }
}
