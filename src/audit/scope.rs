//! Which namespaces an audit reads, and the policy mode of each: the chart's webhook
//! `namespaceSelector` (opt-in label, never the webhook's own namespace nor `kube-system`) and
//! its mode label, as a pure function of the namespaces listed.

use std::collections::BTreeMap;

use crate::config::Mode;

/// Namespace labels.
pub type Labels = BTreeMap<String, String>;

/// Namespaces the webhook never sees, whatever the chart's values (see the chart's
/// `namespaceSelector`).
pub const ALWAYS_EXCLUDED: &[&str] = &["kube-system"];

/// The chart's namespace selection, as flags (the CronJob passes the chart's values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The opt-in label: key and value.
    pub opt_in: (String, String),
    /// The label naming the policy mode (`enforce`, `warn` or `audit`).
    pub mode_label: String,
    /// Namespaces left out on top of [`ALWAYS_EXCLUDED`] (the webhook's own, `excludeNamespaces`).
    pub excluded: Vec<String>,
}

impl Default for Selector {
    /// The chart's defaults (`webhooks.optInLabel`, `webhooks.policyModeLabel`).
    fn default() -> Self {
        Self {
            opt_in: ("earthly.dev/webhook".to_owned(), "enabled".to_owned()),
            mode_label: "earthly.dev/policy".to_owned(),
            excluded: Vec::new(),
        }
    }
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// The namespaces the webhook judges.
    Selected,
    /// `--all-namespaces`.
    All,
    /// `--namespace NS`, repeatable.
    Named(Vec<String>),
}

/// A namespace to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub labels: Labels,
    pub mode: Mode,
}

/// A scope that cannot be audited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("--namespace {0}: no such namespace")]
    NoSuchNamespace(String),
    #[error("--opt-in-label {0:?}: expected KEY=VALUE, e.g. earthly.dev/webhook=enabled")]
    BadLabel(String),
}

/// Parses `KEY=VALUE`.
pub fn parse_label(s: &str) -> Result<(String, String), ScopeError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(ScopeError::BadLabel(s.to_owned())),
    }
}

/// The mode a namespace's webhook entry applies: its mode label when that is a mode, else the
/// policy's default (the chart's `NotIn [enforce, warn, audit]` entry).
pub fn mode_of(labels: &Labels, mode_label: &str, default: Mode) -> Mode {
    match labels.get(mode_label).map(String::as_str) {
        Some("enforce") => Mode::Enforce,
        Some("warn") => Mode::Warn,
        Some("audit") => Mode::Audit,
        _ => default,
    }
}

impl Selector {
    /// The `labelSelector` that lists only opted-in namespaces.
    pub fn label_selector(&self) -> String {
        format!("{}={}", self.opt_in.0, self.opt_in.1)
    }

    /// Whether the webhook's namespaceSelector sends this namespace's objects to the webhook.
    pub fn selects(&self, name: &str, labels: &Labels) -> bool {
        labels.get(&self.opt_in.0) == Some(&self.opt_in.1)
            && !ALWAYS_EXCLUDED.contains(&name)
            && !self.excluded.iter().any(|e| e == name)
    }
}

/// The namespaces to audit, by name, from the namespaces listed.
pub fn select(
    namespaces: &[(String, Labels)],
    requested: &Requested,
    selector: &Selector,
    default: Mode,
) -> Result<Vec<Target>, ScopeError> {
    let target = |(name, labels): &(String, Labels)| Target {
        name: name.clone(),
        labels: labels.clone(),
        mode: mode_of(labels, &selector.mode_label, default),
    };
    let mut targets: Vec<Target> = match requested {
        Requested::Selected => namespaces
            .iter()
            .filter(|(name, labels)| selector.selects(name, labels))
            .map(target)
            .collect(),
        Requested::All => namespaces.iter().map(target).collect(),
        Requested::Named(names) => names
            .iter()
            .map(|n| {
                namespaces
                    .iter()
                    .find(|(name, _)| name == n)
                    .map(target)
                    .ok_or_else(|| ScopeError::NoSuchNamespace(n.clone()))
            })
            .collect::<Result<_, _>>()?,
    };
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    targets.dedup_by(|a, b| a.name == b.name);
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, pairs: &[(&str, &str)]) -> (String, Labels) {
        (
            name.to_owned(),
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn selector() -> Selector {
        Selector {
            excluded: vec!["earthly-webhook".to_owned()],
            ..Selector::default()
        }
    }

    fn names(t: &[Target]) -> Vec<(&str, Mode)> {
        t.iter().map(|t| (t.name.as_str(), t.mode)).collect()
    }

    fn cluster() -> Vec<(String, Labels)> {
        let on = ("earthly.dev/webhook", "enabled");
        vec![
            ns("team-b", &[on, ("earthly.dev/policy", "warn")]),
            ns("team-a", &[on]),
            ns("kube-system", &[on]),
            ns("earthly-webhook", &[on]),
            ns("off", &[("earthly.dev/policy", "audit")]),
            ns("typo", &[on, ("earthly.dev/policy", "enforec")]),
        ]
    }

    #[test]
    fn selects_opted_in_namespaces_but_never_the_webhooks_own_nor_kube_system() {
        let t = select(&cluster(), &Requested::Selected, &selector(), Mode::Audit).expect("ok");
        assert_eq!(
            names(&t),
            [
                ("team-a", Mode::Audit),
                ("team-b", Mode::Warn),
                ("typo", Mode::Audit)
            ]
        );
    }

    #[test]
    fn named_namespaces_override_the_selector_and_must_exist() {
        let named = Requested::Named(vec!["off".to_owned(), "kube-system".to_owned()]);
        let t = select(&cluster(), &named, &selector(), Mode::Enforce).expect("ok");
        assert_eq!(
            names(&t),
            [("kube-system", Mode::Enforce), ("off", Mode::Audit)]
        );
        let missing = Requested::Named(vec!["nope".to_owned()]);
        assert_eq!(
            select(&cluster(), &missing, &selector(), Mode::Enforce),
            Err(ScopeError::NoSuchNamespace("nope".to_owned()))
        );
    }

    #[test]
    fn all_namespaces_takes_every_one() {
        let t = select(&cluster(), &Requested::All, &selector(), Mode::Enforce).expect("ok");
        assert_eq!(t.len(), 6);
    }

    #[test]
    fn opt_in_label_needs_a_key_and_an_equals_sign() {
        assert_eq!(parse_label("a/b=c"), Ok(("a/b".to_owned(), "c".to_owned())));
        assert!(parse_label("nokey").is_err());
        assert!(parse_label("=v").is_err());
    }
}
