//! The role of a runner image (`earthly/earthly`, `earthbuild/earthbuild`) as its entrypoint
//! decides it. `earthly-entrypoint.sh` (the same in Earthly v0.6, v0.7 and v0.8, and in
//! EarthBuild) starts an embedded buildkitd if and only if `[ -z "$NO_BUILDKIT" ]` and
//! `[ -z "$BUILDKIT_HOST" ]` both hold, and then overwrites `EARTHLY_BUILDKIT_HOST`. So any
//! non-empty value of either variable (`"false"`, `"0"`, loopback and `unix://` addresses
//! included) makes a client, and `EARTHLY_BUILDKIT_HOST` alone does not, unless the container's
//! `command` replaces the entrypoint.

use k8s_openapi::api::core::v1::{Container, EnvVar};

use super::{ROLE_ANNOTATION_PREFIX, Role};
use crate::family::Family;

/// The script whose rules this module follows; a `command` naming it still runs them.
const ENTRYPOINT: &str = "earthly-entrypoint.sh";
/// The two variables the entrypoint's shell tests read, in the order it tests them.
const ENTRYPOINT_VARS: [&str; 2] = ["NO_BUILDKIT", "BUILDKIT_HOST"];

/// The last definition of an env var in `env` (the last one wins in Kubernetes).
pub(crate) fn env_var<'a>(container: &'a Container, name: &str) -> Option<&'a EnvVar> {
    container
        .env
        .as_deref()?
        .iter()
        .rev()
        .find(|e| e.name == name)
}

/// What the shell test `[ -z "$NAME" ]` sees for a container's variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shell<'a> {
    /// Unset, or set to the empty string (then `envFrom` cannot change it: `env` wins).
    Empty,
    /// A literal non-empty value; whitespace counts, as it does for the shell.
    Value(&'a str),
    /// Set from a ConfigMap, Secret or field reference: non-empty to the webhook's knowledge,
    /// its value unknown.
    Reference,
    /// Not in `env`, but one of the container's `envFrom` sources may define it.
    MaybeEnvFrom,
}

impl Shell<'_> {
    fn is_set(self) -> bool {
        matches!(self, Shell::Value(_) | Shell::Reference)
    }
}

/// Reads a variable the way the entrypoint's shell tests do.
pub(crate) fn shell<'a>(container: &'a Container, name: &str) -> Shell<'a> {
    match env_var(container, name) {
        Some(e) if e.value_from.is_some() => Shell::Reference,
        Some(e) => match e.value.as_deref() {
            Some(v) if !v.is_empty() => Shell::Value(v),
            _ => Shell::Empty,
        },
        None if env_from_may_define(container, name) => Shell::MaybeEnvFrom,
        None => Shell::Empty,
    }
}

/// Whether an `envFrom` source could define `name`: a source's keys get its `prefix`, so a
/// source prefixed `APP_` cannot define `BUILDKIT_HOST`.
fn env_from_may_define(container: &Container, name: &str) -> bool {
    container
        .env_from
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|s| name.starts_with(s.prefix.as_deref().unwrap_or("")))
}

/// Whether the container's `command` replaces the image's entrypoint. A command that runs the
/// entrypoint script itself (`sh -c "earthly-entrypoint.sh ..."`) does not.
fn replaces_entrypoint(container: &Container) -> bool {
    let command = container.command.as_deref().unwrap_or_default();
    !command.is_empty()
        && !command
            .iter()
            .chain(container.args.iter().flatten())
            .any(|a| a.contains(ENTRYPOINT))
}

/// The role of a runner container, and a note when the webhook had to assume it or when the
/// role differs from what the container's author probably meant.
pub(crate) fn runner_role(container: &Container, family: Family) -> (Role, Option<String>) {
    let name = &container.name;
    let annotate =
        |role: &str| format!("annotate the pod with {ROLE_ANNOTATION_PREFIX}{name}: {role}");
    let tested = ENTRYPOINT_VARS.map(|v| (v, shell(container, v)));
    if tested.iter().any(|(_, s)| matches!(s, Shell::Value(_))) {
        return (Role::Client, None);
    }
    if let Some((var, _)) = tested.iter().find(|(_, s)| *s == Shell::Reference) {
        return (
            Role::Client,
            Some(format!(
                "container {name}: {var} comes from a reference the webhook cannot read (env valueFrom); \
                 taken as non-empty, so the image's entrypoint starts no buildkitd and {name} is a remote client. \
                 If the value can be empty, {}",
                annotate("all-in-one")
            )),
        );
    }
    let from_env_from = tested.iter().any(|(_, s)| *s == Shell::MaybeEnvFrom);
    let cli_host = family
        .cli_host_vars()
        .iter()
        .find(|v| shell(container, v).is_set());
    if replaces_entrypoint(container) {
        return match cli_host {
            Some(var) => (
                Role::Client,
                Some(format!(
                    "container {name}: its command replaces the image's entrypoint, so no embedded buildkitd starts \
                     and {var} decides: taken as a remote client. If the command runs {ENTRYPOINT}, {}",
                    annotate("all-in-one")
                )),
            ),
            None => (
                Role::AllInOne,
                Some(format!(
                    "container {name}: its command replaces the image's entrypoint; the role was chosen by the \
                     entrypoint's rules (NO_BUILDKIT and BUILDKIT_HOST empty: an all-in-one runner starting its own \
                     buildkitd). If the command never starts buildkitd, {}",
                    annotate("client")
                )),
            ),
        };
    }
    if from_env_from {
        return (
            Role::AllInOne,
            Some(format!(
                "container {name}: envFrom may define NO_BUILDKIT or BUILDKIT_HOST, which the webhook cannot read; \
                 assumed an all-in-one runner (the image's entrypoint starts its own buildkitd when both are empty). \
                 If either is set there, {}",
                annotate("client")
            )),
        );
    }
    let note = cli_host.map(|var| {
        format!(
            "container {name} sets {var} but neither BUILDKIT_HOST nor NO_BUILDKIT: the image's entrypoint starts \
             its own buildkitd and overwrites {var}, so {name} is an all-in-one runner. To use a remote buildkitd, \
             set BUILDKIT_HOST instead"
        )
    });
    (Role::AllInOne, note)
}

/// The buildkit address the client is given, if any: `Some(None)` when it comes from a
/// reference (ConfigMap, Secret) this webhook cannot read.
pub(crate) fn buildkit_host(container: &Container) -> Option<Option<&str>> {
    ["BUILDKIT_HOST", "EARTHLY_BUILDKIT_HOST"]
        .iter()
        .find_map(|n| env_var(container, n))
        .map(|e| match (&e.value, &e.value_from) {
            (_, Some(_)) => None,
            (v, None) => Some(v.as_deref().unwrap_or("")),
        })
}

/// Whether a `tcp://` address points away from the pod itself.
pub(crate) fn is_remote_tcp(address: &str) -> bool {
    let Some(rest) = address.trim().strip_prefix("tcp://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    !(host.is_empty()
        || host.eq_ignore_ascii_case("localhost")
        || host.starts_with("127.")
        || host == "::1"
        || host == "0.0.0.0")
}

/// Whether a buildkit address can only be served from inside the pod: a `unix://` socket or a
/// loopback `tcp://` address.
pub(crate) fn is_in_pod(address: &str) -> bool {
    let a = address.trim();
    a.starts_with("unix://") || (a.starts_with("tcp://") && !is_remote_tcp(a))
}
