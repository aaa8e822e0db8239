//! Pods the mutation cannot make run: settings next to a privileged Earthly container that stop
//! it at start-up or later on the node. Each is a warning naming the field and the fix; the
//! webhook does not override the user's choice.

use k8s_openapi::api::core::v1::{Container, PodSpec, VolumeMount};

use crate::detect::Found;
use crate::rule_id::{RuleId, Warning};

/// Whether the pod is a Windows pod. The apiserver refuses `privileged` there ("cannot be set
/// for a windows pod"), so the patch must not set it.
pub fn is_windows(spec: &PodSpec) -> bool {
    spec.os
        .as_ref()
        .is_some_and(|os| os.name.eq_ignore_ascii_case("windows"))
}

fn names(privileged: &[&Found]) -> String {
    let names: Vec<&str> = privileged.iter().map(|f| f.name.as_str()).collect();
    names.join(", ")
}

/// Why a Windows pod is left unchanged. `field` is the pod spec's dotted path.
pub fn windows(field: &str, privileged: &[&Found]) -> Warning {
    Warning::new(
        RuleId::WindowsPod,
        format!(
            "{field}.os.name is windows: the apiserver refuses privileged for a windows pod and Earthly's images \
         run on Linux only, so the webhook leaves the pod unchanged; set {field}.os.name to linux (or remove it) \
         to run container(s) {}",
            names(privileged)
        ),
    )
}

/// `hostUsers: false` next to privileged Earthly containers.
pub fn host_users(spec: &PodSpec, field: &str, privileged: &[&Found]) -> Option<Warning> {
    (spec.host_users == Some(false)).then(|| {
        Warning::new(RuleId::HostUsersFalse, format!(
            "{field}.hostUsers is false: container(s) {} would run privileged in a user namespace, which Earthly's \
             guide does not cover (privileged pods in the host user namespace only), and a failure would show \
             only on the node; remove hostUsers: false",
            names(privileged)
        ))
    })
}

/// `runAsNonRoot: true` on the container, or on the pod and not overridden by the container:
/// the kubelet refuses to start Earthly's images, which run as root.
pub fn run_as_non_root(
    spec: &PodSpec,
    field: &str,
    container: &Container,
    container_field: &str,
) -> Option<Warning> {
    let own = container
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root);
    let pod = spec
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root);
    let name = &container.name;
    let message = match (own, pod) {
        (Some(true), _) => format!(
            "container {name} cannot run: {container_field}.securityContext.runAsNonRoot is true, but Earthly's \
             images run as root to start buildkitd; set it to false"
        ),
        (None, Some(true)) => format!(
            "container {name} cannot run: {field}.securityContext.runAsNonRoot is true, but Earthly's images run as \
             root to start buildkitd; set {container_field}.securityContext.runAsNonRoot to false (it overrides the \
             pod's), or remove it from the pod"
        ),
        _ => return None,
    };
    Some(Warning::new(RuleId::RunAsNonRoot, message))
}

/// A read-only volume at (or above) the scratch path: Earthly writes its cache there.
pub fn read_only_scratch(
    container: &Container,
    container_field: &str,
    path: &str,
    index: usize,
    mount: &VolumeMount,
) -> Option<Warning> {
    (mount.read_only == Some(true)).then(|| {
        Warning::new(RuleId::ReadOnlyScratch, format!(
            "container {} cannot write its scratch data: volume {} is mounted read-only at {} \
             ({container_field}.volumeMounts[{index}].readOnly), which holds {path}; set readOnly: false, or \
             point the tmp-dir variable at a writable volume",
            container.name, mount.name, mount.mount_path
        ))
    })
}
