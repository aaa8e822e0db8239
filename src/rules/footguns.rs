//! Warnings for Earthly footguns in a pod spec (a pod's, or a workload's pod template).

use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::{Findings, RuleId};
use crate::detect::{Found, Role, buildkit_host, env_var, is_remote_tcp};
use crate::mutate::{has_mount_at, is_privileged, scratch_path};

fn is_false(container: &Container, name: &str) -> bool {
    env_var(container, name)
        .and_then(|e| e.value.as_deref())
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0" | "no"))
}

fn is_true(container: &Container, name: &str) -> bool {
    env_var(container, name)
        .and_then(|e| e.value.as_deref())
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// Checks the Earthly containers of a pod spec. `object` names the pod in messages; `field` is
/// the JSON path of the spec in it (`spec`).
pub fn check(object: &str, field: &str, spec: &PodSpec, found: &[Found]) -> Findings {
    check_with(object, field, spec, found, false)
}

/// Checks the Earthly containers of a workload's pod template, so the person who applies the
/// workload sees what a pod's warnings would only tell its controller. `field` is the JSON path
/// of the template's spec (`spec.template.spec`). What the mutating webhook will give the pods
/// (privileges, the scratch volume) is not warned about here.
pub fn check_template(object: &str, field: &str, spec: &PodSpec, found: &[Found]) -> Findings {
    check_with(object, field, spec, found, true)
}

fn check_with(
    object: &str,
    field: &str,
    spec: &PodSpec,
    found: &[Found],
    mutated_later: bool,
) -> Findings {
    let mut out = Findings::default();
    for f in found {
        let Some(c) = f.container(spec) else {
            continue;
        };
        let at = format!("{field}.{}[{}]", f.list.field(), f.index);
        let name = &c.name;
        if f.role.needs_privileges() && !mutated_later {
            if !is_privileged(c) {
                out.warn(
                    RuleId::EarthlyNotPrivileged,
                    format!(
                    "{object}: container {name} ({}) is not privileged ({at}.securityContext.privileged); \
                     set it to true, or install the earthly-webhook mutating webhook",
                    f.role.describe()
                ));
            }
            let (path, _) = scratch_path(c, f.family);
            if !has_mount_at(c, &path) {
                out.warn(
                    RuleId::EarthlyNoScratchVolume,
                    format!(
                    "{object}: container {name} has no scratch volume at {path} ({at}.volumeMounts); \
                     mount an emptyDir there, or install the earthly-webhook mutating webhook"
                ));
            }
        }
        if f.role == Role::Buildkitd
            && is_true(c, "BUILDKIT_TCP_TRANSPORT_ENABLED")
            && is_false(c, "BUILDKIT_TLS_ENABLED")
        {
            out.warn(
                    RuleId::BuildkitdTlsOff,
                    format!(
                "{object}: container {name} serves buildkit over TCP without TLS ({at}.env BUILDKIT_TLS_ENABLED=false); \
                 enable TLS and share its certificates with the clients"
            ));
        }
        if f.role == Role::Client
            && let Some(Some(addr)) = buildkit_host(c)
            && is_remote_tcp(addr)
            && (is_false(c, "BUILDKIT_TLS_ENABLED") || is_false(c, "EARTHLY_TLS_ENABLED"))
        {
            out.warn(
                    RuleId::ClientTlsOff,
                    format!(
                "{object}: container {name} talks to buildkit at {addr} over plain TCP with TLS disabled ({at}.env); \
                 enable TLS on buildkitd and the client"
            ));
        }
        if env_var(c, "SRC_DIR").is_some() {
            out.warn(
                    RuleId::SrcDirIgnored,
                    format!(
                "{object}: container {name} sets SRC_DIR, which Earthly no longer reads ({at}.env); \
                 put the source in the working directory (/workspace) instead"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Detection;
    use crate::detect::Detector;
    use serde_json::json;

    fn findings(spec: serde_json::Value) -> Findings {
        let spec: PodSpec = serde_json::from_value(spec).expect("spec");
        let found = Detector::new(&Detection::default())
            .expect("detector")
            .classify(None, &spec)
            .expect("classify");
        check("Pod ci/p", "spec", &spec, &found)
    }

    #[test]
    fn unprivileged_runner_is_warned_about() {
        let f = findings(json!({"containers": [{"name": "e", "image": "earthly/earthly"}]}));
        assert_eq!(f.warnings.len(), 2);
        assert!(f.warnings[0].message.starts_with(
            "Pod ci/p: container e (all-in-one Earthly runner) is not privileged (spec.containers[0].securityContext.privileged)"
        ));
        assert!(
            f.warnings[1]
                .message
                .contains("no scratch volume at /tmp/earthly")
        );
        let rules: Vec<RuleId> = f.warnings.iter().map(|w| w.rule).collect();
        assert_eq!(
            rules,
            [RuleId::EarthlyNotPrivileged, RuleId::EarthlyNoScratchVolume]
        );
        assert!(f.violations.is_empty());
    }

    #[test]
    fn complete_runner_has_no_warnings() {
        let f = findings(
            json!({"containers": [{"name": "e", "image": "earthly/earthly",
            "securityContext": {"privileged": true},
            "volumeMounts": [{"name": "t", "mountPath": "/tmp/earthly"}]}],
            "volumes": [{"name": "t", "emptyDir": {}}]}),
        );
        assert_eq!(f, Findings::default());
    }

    #[test]
    fn plain_tcp_client_with_tls_off_is_warned_about() {
        let f = findings(
            json!({"containers": [{"name": "e", "image": "earthly/earthly", "env": [
            {"name": "BUILDKIT_HOST", "value": "tcp://bk:8372"},
            {"name": "BUILDKIT_TLS_ENABLED", "value": "false"}]}]}),
        );
        assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
        assert!(
            f.warnings[0]
                .message
                .contains("over plain TCP with TLS disabled")
        );
        assert_eq!(f.warnings[0].rule, RuleId::ClientTlsOff);
    }

    #[test]
    fn buildkitd_without_tls_on_tcp_is_warned_about() {
        let f = findings(
            json!({"containers": [{"name": "b", "image": "earthly/buildkitd",
            "securityContext": {"privileged": true},
            "volumeMounts": [{"name": "t", "mountPath": "/tmp/earthly"}],
            "env": [{"name": "BUILDKIT_TCP_TRANSPORT_ENABLED", "value": "true"},
                    {"name": "BUILDKIT_TLS_ENABLED", "value": "false"}]}]}),
        );
        assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
        assert!(f.warnings[0].message.contains("without TLS"));
        assert_eq!(f.warnings[0].rule, RuleId::BuildkitdTlsOff);
    }

    #[test]
    fn src_dir_is_deprecated() {
        let f = findings(
            json!({"containers": [{"name": "e", "image": "earthly/earthly", "env": [
            {"name": "NO_BUILDKIT", "value": "1"}, {"name": "SRC_DIR", "value": "/src"}]}]}),
        );
        assert_eq!(f.warnings.len(), 1);
        assert!(f.warnings[0].message.contains("SRC_DIR"));
        assert_eq!(f.warnings[0].rule, RuleId::SrcDirIgnored);
    }

    #[test]
    fn unrelated_pod_has_no_findings() {
        let f = findings(
            json!({"containers": [{"name": "n", "image": "nginx", "env": [{"name": "SRC_DIR", "value": "/x"}]}]}),
        );
        assert_eq!(f, Findings::default());
    }
}
