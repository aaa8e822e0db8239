//! Each thing `check` reports about an object, with a stable rule id, a level and the line it
//! points at: what the SARIF and JUnit outputs are made of. Violations carry the policy's rule
//! ids; warnings have none yet, so [`warning_rule`] gives each source one. When the policy gets
//! its rule-id enum (issue 13), [`warning_rule`] and [`RULES`] are the two places to repoint.

use serde_json::Value;

use super::{ObjectReport, Outcome};
use crate::config::Mode;

/// How serious a finding is, in SARIF's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The object would be refused.
    Error,
    /// Admitted, but something is wrong or risky.
    Warning,
    /// Said for information: a change the webhook makes, or what audit mode records.
    Note,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "note",
        }
    }
}

/// A rule `check` can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleInfo {
    pub id: &'static str,
    /// A short CamelCase name (SARIF `rule.name`).
    pub name: &'static str,
    /// One sentence: what the rule wants, and the way out.
    pub help: &'static str,
    /// The level when the mode is `enforce` (violations) or always (warnings and notes).
    pub level: Level,
    /// The field a finding points at when its message names none (JSON pointer).
    pub field: Option<&'static str>,
}

const fn rule(
    id: &'static str,
    name: &'static str,
    help: &'static str,
    level: Level,
    field: Option<&'static str>,
) -> RuleInfo {
    RuleInfo {
        id,
        name,
        help,
        level,
        field,
    }
}

/// Every rule id `check` reports, in the order SARIF lists them.
pub const RULES: &[RuleInfo] = &[
    rule(
        "buildkitd-replicas",
        "BuildkitdReplicas",
        "earthly/buildkitd keeps its state on one node: run one replica, or enable sticky multi-instance mode and front the replicas with a Service using sessionAffinity: ClientIP.",
        Level::Error,
        Some("/spec/replicas"),
    ),
    rule(
        "buildkitd-scale",
        "BuildkitdScale",
        "Scaling buildkitd past one replica is refused for the same reason as buildkitd-replicas.",
        Level::Error,
        Some("/spec/replicas"),
    ),
    rule(
        "buildkitd-daemonset",
        "BuildkitdDaemonSet",
        "A DaemonSet runs one buildkitd per node: use a Deployment or StatefulSet with one replica.",
        Level::Error,
        Some("/kind"),
    ),
    rule(
        "buildkitd-autoscaler",
        "BuildkitdAutoscaler",
        "An autoscaler may scale buildkitd past one replica: cap maxReplicas at 1, or enable sticky multi-instance mode.",
        Level::Error,
        Some("/spec/maxReplicas"),
    ),
    rule(
        "buildkitd-second-pod",
        "BuildkitdSecondPod",
        "A second bare buildkitd pod splits the cache: keep one.",
        Level::Error,
        None,
    ),
    rule(
        "buildkitd-service-not-sticky",
        "BuildkitdServiceNotSticky",
        "Clients must reach the same buildkitd each time: set sessionAffinity: ClientIP on its Service.",
        Level::Error,
        Some("/spec/sessionAffinity"),
    ),
    rule(
        "buildkitd-second-workload",
        "BuildkitdSecondWorkload",
        "Two buildkitd workloads behind one Service split the cache: keep one behind it.",
        Level::Error,
        None,
    ),
    rule(
        "buildkitd-fleet-tls",
        "BuildkitdFleetTls",
        "The buildkitd instances behind one Service must share one TLS configuration.",
        Level::Error,
        None,
    ),
    rule(
        "pod-security-admission",
        "PodSecurityAdmission",
        "The namespace's Pod Security level refuses privileged pods, which Earthly needs: label the namespace pod-security.kubernetes.io/enforce=privileged.",
        Level::Error,
        Some("/spec/containers"),
    ),
    rule(
        "role-annotation",
        "RoleAnnotation",
        "The earthly.dev/role annotation must name a role the webhook knows.",
        Level::Error,
        Some("/metadata/annotations"),
    ),
    rule(
        "lookup-failed",
        "LookupFailed",
        "A rule needed an object that is not in the input: add it to the input, or check against the cluster.",
        Level::Warning,
        None,
    ),
    rule(
        "unreadable-object",
        "UnreadableObject",
        "The webhook could not read the object as its kind.",
        Level::Error,
        None,
    ),
    rule(
        "earthly-not-privileged",
        "EarthlyNotPrivileged",
        "Earthly's runner and buildkitd need securityContext.privileged: true; set it, or install the mutating webhook.",
        Level::Warning,
        None,
    ),
    rule(
        "earthly-no-scratch-volume",
        "EarthlyNoScratchVolume",
        "Earthly's runner and buildkitd need a scratch volume (emptyDir) at /tmp/earthly; mount one, or install the mutating webhook.",
        Level::Warning,
        None,
    ),
    rule(
        "buildkitd-tls-off",
        "BuildkitdTlsOff",
        "buildkitd serves over TCP without TLS: enable TLS and share its certificates with the clients.",
        Level::Warning,
        None,
    ),
    rule(
        "client-tls-off",
        "ClientTlsOff",
        "The Earthly client talks to a remote buildkitd over plain TCP: enable TLS on both.",
        Level::Warning,
        None,
    ),
    rule(
        "src-dir-ignored",
        "SrcDirIgnored",
        "Earthly no longer reads SRC_DIR: put the source in the working directory instead.",
        Level::Warning,
        None,
    ),
    rule(
        "mutate-privileged",
        "MutatePrivileged",
        "The mutating webhook makes Earthly containers privileged.",
        Level::Note,
        None,
    ),
    rule(
        "mutate-scratch-volume",
        "MutateScratchVolume",
        "The mutating webhook mounts a scratch volume for Earthly containers.",
        Level::Note,
        None,
    ),
    rule(
        "mutate-cni-mtu",
        "MutateCniMtu",
        "The mutating webhook sets CNI_MTU on buildkitd.",
        Level::Note,
        None,
    ),
    rule(
        "mutate-toleration",
        "MutateToleration",
        "The mutating webhook adds the privileged nodes' toleration.",
        Level::Note,
        None,
    ),
    rule(
        "mutate-node-selector",
        "MutateNodeSelector",
        "The mutating webhook adds the privileged nodes' nodeSelector.",
        Level::Note,
        None,
    ),
    rule(
        "mutate-node-affinity",
        "MutateNodeAffinity",
        "The mutating webhook adds the privileged nodes' node affinity.",
        Level::Note,
        None,
    ),
    rule(
        "buildkitd-version-skew",
        "BuildkitdVersionSkew",
        "A remote client and its buildkitd should run the same Earthly version.",
        Level::Warning,
        None,
    ),
    rule(
        "warning",
        "Warning",
        "A warning from the webhook without a rule of its own.",
        Level::Warning,
        None,
    ),
];

/// The rule of `id`; unknown ids (a rule added to the policy but not here) get the generic one.
pub fn rule_info(id: &str) -> &'static RuleInfo {
    RULES
        .iter()
        .find(|r| r.id == id)
        .unwrap_or(&RULES[RULES.len() - 1])
}

/// The rule behind a warning the webhook returned, from the sentence its source writes
/// (src/validate/pod.rs, src/mutate.rs, src/review/cluster_rules.rs).
pub fn warning_rule(message: &str) -> &'static str {
    const BY_TEXT: &[(&str, &str)] = &[
        ("is not privileged (", "earthly-not-privileged"),
        ("has no scratch volume at", "earthly-no-scratch-volume"),
        ("serves buildkit over TCP without TLS", "buildkitd-tls-off"),
        ("over plain TCP with TLS disabled", "client-tls-off"),
        ("sets SRC_DIR", "src-dir-ignored"),
        (
            "mismatched versions are unsupported",
            "buildkitd-version-skew",
        ),
        ("admitted unchecked", "lookup-failed"),
        ("changed privileged: false to true", "mutate-privileged"),
        ("set privileged on container", "mutate-privileged"),
        ("mounted scratch volume", "mutate-scratch-volume"),
        ("set CNI_MTU=", "mutate-cni-mtu"),
        ("added toleration for taint", "mutate-toleration"),
        ("added nodeSelector", "mutate-node-selector"),
        ("added node affinity", "mutate-node-affinity"),
    ];
    BY_TEXT
        .iter()
        .find(|(text, _)| message.contains(text))
        .map_or("warning", |(_, id)| id)
}

/// One thing reported about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static RuleInfo,
    pub level: Level,
    pub message: String,
    /// 1-based line in the object's file: the offending field's when known, else the object's.
    pub line: Option<usize>,
}

/// The field a message names in parentheses, as a JSON pointer:
/// `(spec.template.spec.containers[0].env)` is `/spec/template/spec/containers/0/env`.
fn named_field(message: &str) -> Option<String> {
    let start = message
        .find("(spec.")
        .or_else(|| message.find("(metadata."))?
        + 1;
    let len = message[start..].find([')', ' '])?;
    let dotted = &message[start..start + len];
    Some(dotted.split('.').fold(String::new(), |mut out, part| {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.strip_suffix(']')),
            None => (part, None),
        };
        out.push('/');
        out.push_str(name);
        if let Some(i) = index {
            out.push('/');
            out.push_str(i);
        }
        out
    }))
}

/// Where pod specs sit in the kinds `check` sends pods for: a Pod, a workload's template, a
/// CronJob's job template.
const POD_SPECS: &[&str] = &[
    "/spec",
    "/spec/template/spec",
    "/spec/jobTemplate/spec/template/spec",
];

/// The container a message names (`... on container earthly: ...`, `... in container earthly`),
/// as a pointer into the object.
fn named_container(message: &str, object: &Value) -> Option<String> {
    let rest = &message[message.find("container ")? + "container ".len()..];
    let name = rest.split([' ', ':', ';', ',']).next()?;
    POD_SPECS.iter().find_map(|spec| {
        ["containers", "initContainers"].iter().find_map(|list| {
            let pointer = format!("{spec}/{list}");
            let index = object
                .pointer(&pointer)?
                .as_array()?
                .iter()
                .position(|c| c["name"] == name)?;
            Some(format!("{pointer}/{index}"))
        })
    })
}

/// The line of the field the message or the rule names, else of the container it names; a
/// field the object does not have (yet) points at its nearest ancestor that it has.
fn locate(o: &ObjectReport, message: &str, rule: &RuleInfo) -> Option<usize> {
    let pointer = named_field(message)
        .or_else(|| rule.field.map(str::to_owned))
        .or_else(|| named_container(message, &o.mutated))
        .unwrap_or_default();
    o.lines.line_of(&pointer)
}

/// Everything reported about one object: its violations (an error when `enforce` refused
/// them, a warning in `warn` mode, a note in `audit` mode), denials no violation explains, and
/// its warnings.
pub fn findings(o: &ObjectReport, mode: Mode) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |rule: &'static RuleInfo, level: Level, message: &str| {
        out.push(Finding {
            rule,
            level,
            message: message.to_owned(),
            line: locate(o, message, rule),
        });
    };
    let violation_level = match (mode, o.verdict) {
        (Mode::Enforce, Outcome::Denied) => Level::Error,
        (Mode::Audit, _) => Level::Note,
        _ => Level::Warning,
    };
    for v in &o.violations {
        push(rule_info(v.rule.as_str()), violation_level, &v.message);
    }
    for d in &o.denials {
        if !o.violations.iter().any(|v| d.contains(&v.message)) {
            push(rule_info("unreadable-object"), Level::Error, d);
        }
    }
    for w in &o.warnings {
        if !o.violations.iter().any(|v| &v.message == w) {
            let rule = rule_info(warning_rule(w));
            push(rule, rule.level, w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_warning_source_has_its_rule() {
        for (message, id) in [
            (
                "Pod ci/a: container e (the all-in-one Earthly runner) is not privileged (spec.containers[0].securityContext.privileged); set it",
                "earthly-not-privileged",
            ),
            (
                "set privileged on container e: the runner cannot run unprivileged",
                "mutate-privileged",
            ),
            (
                "mounted scratch volume earthly-tmp at /tmp/earthly in container e",
                "mutate-scratch-volume",
            ),
            ("something new", "warning"),
        ] {
            assert_eq!(warning_rule(message), id, "{message}");
            assert_eq!(rule_info(id).id, id);
        }
    }

    #[test]
    fn rule_ids_are_unique() {
        let mut ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
    }

    #[test]
    fn named_containers_are_found_in_any_pod_spec() {
        let job = serde_json::json!({"spec": {"template": {"spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "a"}, {"name": "earthly"}]}}}});
        assert_eq!(
            named_container("set privileged on container earthly: the runner", &job).as_deref(),
            Some("/spec/template/spec/containers/1")
        );
        assert_eq!(
            named_container(
                "mounted scratch volume x at /tmp/earthly in container init",
                &job
            )
            .as_deref(),
            Some("/spec/template/spec/initContainers/0")
        );
        assert_eq!(named_container("container nobody: x", &job), None);
    }

    #[test]
    fn named_fields_become_pointers() {
        assert_eq!(
            named_field("x (spec.template.spec.containers[1].env BUILDKIT_TLS_ENABLED=false); y")
                .as_deref(),
            Some("/spec/template/spec/containers/1/env")
        );
        assert_eq!(named_field("no field here"), None);
    }
}
