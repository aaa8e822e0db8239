//! Each thing `check` reports about an object, with its rule id, a level and the line it points
//! at: what the SARIF and JUnit outputs are made of. Every finding has a [`RuleId`]: violations
//! and warnings carry theirs from the rules, mutation sentences from the patch they describe.

use serde_json::Value;

use super::{ObjectReport, Outcome};
use crate::config::Mode;
use crate::rule_id::{RuleId, RuleKind};

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

    /// A rule's level when the mode is `enforce` (violations) or always (warnings, mutations).
    pub fn of(rule: RuleId) -> Level {
        match rule.kind() {
            RuleKind::Violation => Level::Error,
            RuleKind::Warning => Level::Warning,
            RuleKind::Mutation => Level::Note,
        }
    }
}

/// One thing reported about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: RuleId,
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
fn locate(o: &ObjectReport, message: &str, rule: RuleId) -> Option<usize> {
    let pointer = named_field(message)
        .or_else(|| rule.field().map(str::to_owned))
        .or_else(|| named_container(message, &o.mutated))
        .unwrap_or_default();
    o.lines.line_of(&pointer)
}

/// Everything reported about one object: its violations (an error when `enforce` refused
/// them, a warning in `warn` mode, a note in `audit` mode), denials no violation explains, and
/// its warnings.
pub fn findings(o: &ObjectReport, mode: Mode) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |rule: RuleId, level: Level, message: &str| {
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
        push(v.rule, violation_level, &v.message);
    }
    for d in &o.denials {
        if !o.violations.iter().any(|v| d.contains(&v.message)) {
            push(RuleId::UnreadableObject, Level::Error, d);
        }
    }
    // A violation `warn` mode sent as a warning is reported once, as the violation.
    for (w, &rule) in o.warnings.iter().zip(&o.warned) {
        if !o.violations.iter().any(|v| &v.message == w) {
            push(rule, Level::of(rule), w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
