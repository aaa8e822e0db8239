//! What the multi-instance buildkitd rules share: which pods count as a running buildkitd, how an
//! object that asks for several instances is described, and the words of the denial in each
//! `buildkitd.instances` mode.

use k8s_openapi::api::core::v1::{Pod, Service};

use super::service::{self, NotSticky};
use super::{Findings, Violation};
use crate::detect::{Detector, Found, Role};

/// Start of every single-instance denial (upstream: "Multi-node `earthly/buildkitd`
/// configurations are currently unsupported").
pub const SINGLE_PREFIX: &str = "earthly/buildkitd does not support multi-node setups: ";
/// Start of every sticky-mode denial.
pub const STICKY_PREFIX: &str = "earthly/buildkitd multi-instance mode needs sticky sessions: ";
/// The way out that single-instance mode always offers besides running one instance.
pub const STICKY_WAY_OUT: &str =
    "enable sticky multi-instance mode and front it with a Service using sessionAffinity: ClientIP";

/// Audit annotation key of sticky-mode violations, whatever object they are found on.
pub const RULE_NOT_STICKY: &str = "buildkitd-service-not-sticky";

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

/// An object that asks for more than one buildkitd instance behind one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// Audit annotation key in single-instance mode.
    pub rule: &'static str,
    /// What was found, as a sentence without its full stop:
    /// `Deployment earthly-ci/earthly-buildkitd asks for 3 replicas`.
    pub found: String,
    /// The way back to one instance, capitalised: `Set replicas: 1`.
    pub fix: String,
}

impl Demand {
    /// Single-instance mode: the demand itself is the violation.
    pub fn single(&self) -> Violation {
        Violation {
            rule: self.rule,
            message: format!(
                "{SINGLE_PREFIX}{}. {}, or {STICKY_WAY_OUT}.",
                self.found, self.fix
            ),
        }
    }

    /// Sticky mode: one violation per Service among `fronting` (the Services that select the
    /// instances) that does not keep a client on one instance.
    pub fn sticky<'a>(
        &self,
        fronting: impl IntoIterator<Item = &'a Service>,
        min_timeout_seconds: i32,
    ) -> Findings {
        let violations = fronting
            .into_iter()
            .filter_map(|svc| {
                let why = service::stickiness(svc, min_timeout_seconds).err()?;
                Some(self.not_sticky(&service::service_ref(svc), &why, min_timeout_seconds))
            })
            .collect();
        Findings {
            violations,
            warnings: Vec::new(),
        }
    }

    fn not_sticky(&self, service: &str, why: &NotSticky, min_timeout_seconds: i32) -> Violation {
        Violation {
            rule: RULE_NOT_STICKY,
            message: format!(
                "{STICKY_PREFIX}{} behind {service}, which {}. {}, or {}.",
                self.found,
                why.problem(),
                self.fix,
                why.remedy(min_timeout_seconds)
            ),
        }
    }
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

    fn demand() -> Demand {
        Demand {
            rule: "buildkitd-replicas",
            found: "Deployment ci/bk asks for 3 replicas".to_owned(),
            fix: "Set replicas: 1".to_owned(),
        }
    }

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "bk", "namespace": "ci"}, "spec": spec}))
            .expect("service")
    }

    #[test]
    fn single_mode_message_names_both_ways_out() {
        assert_eq!(
            demand().single().message,
            "earthly/buildkitd does not support multi-node setups: Deployment ci/bk asks for 3 \
             replicas. Set replicas: 1, or enable sticky multi-instance mode and front it with a \
             Service using sessionAffinity: ClientIP."
        );
    }

    #[test]
    fn sticky_mode_names_the_service_that_is_not_sticky() {
        let plain = service(json!({"selector": {"app": "bk"}}));
        let f = demand().sticky([&plain], 600);
        assert_eq!(f.violations.len(), 1);
        assert_eq!(f.violations[0].rule, RULE_NOT_STICKY);
        assert_eq!(
            f.violations[0].message,
            "earthly/buildkitd multi-instance mode needs sticky sessions: Deployment ci/bk asks \
             for 3 replicas behind Service ci/bk, which has sessionAffinity: None. Set replicas: \
             1, or set sessionAffinity: ClientIP with sessionAffinityConfig.clientIP.timeoutSeconds \
             of at least 600 on the Service."
        );
    }

    #[test]
    fn sticky_mode_accepts_sticky_services() {
        let sticky = service(json!({"selector": {"app": "bk"}, "sessionAffinity": "ClientIP"}));
        assert_eq!(demand().sticky([&sticky], 600), Findings::default());
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
