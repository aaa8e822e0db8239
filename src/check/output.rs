//! The ways `check` prints a [`Report`]: a text report for people, the mutated manifests, the
//! JSON patches, a JSON report for machines; SARIF and JUnit are in their own modules.

use serde::Serialize;
use serde_json::Value;

use super::{ObjectReport, Outcome, Report, Totals, yaml};
use crate::config::Mode;

/// Version of the `-o json` report layout; bumped only when a field changes meaning or goes.
pub const JSON_REPORT_VERSION: u32 = 1;

/// `-o`: what `check` prints on standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One line per object with its verdict, then its warnings and denials in full.
    Text,
    /// The manifests as the cluster would run them: patches applied, denied objects left out.
    Yaml,
    /// A JSON report for machines (fields: docs/check.md).
    Json,
    /// The JSON patch of each mutated object.
    Patch,
    /// SARIF 2.1.0, for code scanning (GitHub's upload-sarif): a result per finding, at its line.
    Sarif,
    /// JUnit XML, for CI test reports (GitLab, Jenkins): a test case per object.
    Junit,
}

/// Whether to colour the text report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Colour only on a terminal, and never when `NO_COLOR` is set to anything
    /// (<https://no-color.org>).
    pub fn detect(is_terminal: bool) -> Self {
        Self::from_env(is_terminal, std::env::var_os("NO_COLOR").as_deref())
    }

    fn from_env(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> Self {
        Self {
            color: is_terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }

    fn paint(self, sgr: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

const GREEN: &str = "32";
const CYAN: &str = "36";
const BOLD_RED: &str = "1;31";
const YELLOW: &str = "33";
const DIM: &str = "2";

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn origin_text(o: &ObjectReport) -> String {
    match &o.origin.helm_source {
        Some(helm) => format!("{}, {helm}", o.origin),
        None => o.origin.to_string(),
    }
}

/// The text report: a line per object, its details indented below, and a closing summary.
pub fn text(report: &Report, style: Style) -> String {
    let mut out = String::new();
    for o in &report.objects {
        let verdict = match o.verdict {
            Outcome::Allowed => style.paint(GREEN, "allowed"),
            Outcome::Mutated => style.paint(CYAN, "mutated"),
            Outcome::Denied => style.paint(BOLD_RED, "denied"),
        };
        let warnings = if o.warnings.is_empty() {
            String::new()
        } else {
            format!(
                ", {}",
                style.paint(YELLOW, &plural(o.warnings.len(), "warning", "warnings"))
            )
        };
        out.push_str(&format!(
            "{}: {verdict}{warnings} {}\n",
            o.object_ref(),
            style.paint(DIM, &format!("({})", origin_text(o)))
        ));
        if !o.patch.0.is_empty() {
            let rules = o
                .patch_operations
                .iter()
                .map(|(rule, n)| format!("{rule} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "  patch: {} ({rules})\n",
                plural(o.patch.0.len(), "operation", "operations")
            ));
        }
        for d in &o.denials {
            out.push_str(&format!("  {} {d}\n", style.paint(BOLD_RED, "denied:")));
        }
        for w in &o.warnings {
            out.push_str(&format!("  {} {w}\n", style.paint(YELLOW, "warning:")));
        }
        for (key, message) in &o.audit_annotations {
            out.push_str(&format!("  audit annotation {key}: {message}\n"));
        }
    }
    let t = report.totals();
    out.push_str(&format!(
        "\n{} checked in {} mode: {} allowed, {} mutated, {} denied; {}\n",
        plural(t.objects, "object", "objects"),
        report.mode.as_str(),
        t.allowed,
        t.mutated,
        t.denied,
        plural(t.warnings, "warning", "warnings"),
    ));
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    version: u32,
    mode: Mode,
    summary: Totals,
    objects: &'a [ObjectReport],
}

/// The JSON report, pretty-printed, ending in a newline.
pub fn json(report: &Report) -> String {
    let body = JsonReport {
        version: JSON_REPORT_VERSION,
        mode: report.mode,
        summary: report.totals(),
        objects: &report.objects,
    };
    // Plain data with string keys: serialisation cannot fail.
    let mut s = serde_json::to_string_pretty(&body).unwrap_or_default();
    s.push('\n');
    s
}

/// Each mutated object's patch under a `#` line naming it; one operation a line, so the
/// patches read well in a review and each is valid JSON for `kubectl patch --type=json`.
pub fn patch(report: &Report) -> String {
    let mut out = String::new();
    for o in report.objects.iter().filter(|o| !o.patch.0.is_empty()) {
        out.push_str(&format!("# {} ({})\n[\n", o.object_ref(), origin_text(o)));
        let ops: Vec<String> = o
            .patch
            .0
            .iter()
            .map(|op| format!("  {}", serde_json::to_string(op).unwrap_or_default()))
            .collect();
        out.push_str(&ops.join(",\n"));
        out.push_str("\n]\n");
    }
    out
}

/// The manifests with every patch applied, document by document in input order (a `List`
/// stays a `List`), keeping `helm template`'s `# Source:` lines. Denied objects are left out:
/// the cluster would not have them either.
pub fn yaml(report: &Report) -> String {
    let mut out = String::new();
    let mut objects = report.objects.iter();
    for doc in &report.documents {
        let reports: Vec<&ObjectReport> = objects.by_ref().take(doc.objects.len()).collect();
        let kept: Vec<Value> = reports
            .iter()
            .filter(|o| o.verdict != Outcome::Denied)
            .map(|o| o.mutated.clone())
            .collect();
        let is_list = doc.objects.first().is_some_and(|o| o.origin.item.is_some())
            || (doc.objects.is_empty() && doc.value.get("items").is_some());
        let value = if is_list {
            let mut list = doc.value.clone();
            list["items"] = Value::Array(kept);
            list
        } else if let Some(object) = kept.into_iter().next() {
            object
        } else {
            continue;
        };
        out.push_str("---\n");
        if let Some(helm) = &doc.helm_source {
            out.push_str(&format!("# Source: {helm}\n"));
        }
        out.push_str(&yaml::to_string(&value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::input::Origin;
    use crate::rule_id::RuleId;
    use std::collections::BTreeMap;

    fn report(objects: Vec<ObjectReport>) -> Report {
        Report {
            mode: Mode::Audit,
            objects,
            documents: Vec::new(),
        }
    }

    fn object(verdict: Outcome) -> ObjectReport {
        ObjectReport {
            origin: Origin {
                file: "x.yaml".to_owned(),
                document: 2,
                item: Some(3),
                helm_source: Some("chart/templates/job.yaml".to_owned()),
                line: Some(7),
            },
            api_version: "batch/v1".to_owned(),
            kind: "Job".to_owned(),
            namespace: Some("ci".to_owned()),
            name: "build-*".to_owned(),
            verdict,
            warnings: vec!["w1".to_owned(), "w2".to_owned()],
            warned: vec![RuleId::SrcDirIgnored, RuleId::Privileged],
            denials: Vec::new(),
            audit_annotations: BTreeMap::new(),
            patch: json_patch::Patch::default(),
            patch_operations: BTreeMap::new(),
            mutated: Value::Null,
            violations: Vec::new(),
            lines: Default::default(),
        }
    }

    #[test]
    fn text_report_lists_denials_warnings_and_audit_annotations() {
        let mut o = object(Outcome::Denied);
        o.denials.push("no".to_owned());
        o.audit_annotations
            .insert("rule".to_owned(), "recorded".to_owned());
        assert_eq!(
            text(&report(vec![o]), Style { color: false }),
            "Job ci/build-*: denied, 2 warnings (x.yaml document 2 item 3, chart/templates/job.yaml)
  denied: no
  warning: w1
  warning: w2
  audit annotation rule: recorded

1 object checked in audit mode: 0 allowed, 0 mutated, 1 denied; 2 warnings
"
        );
    }

    #[test]
    fn text_report_colours_only_when_asked() {
        let r = report(vec![object(Outcome::Mutated)]);
        let coloured = text(&r, Style { color: true });
        assert!(
            coloured
                .starts_with("Job ci/build-*: \x1b[36mmutated\x1b[0m, \x1b[33m2 warnings\x1b[0m")
        );
        assert!(!text(&r, Style { color: false }).contains('\x1b'));
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        use std::ffi::OsStr;
        assert!(Style::from_env(true, None).color);
        assert!(Style::from_env(true, Some(OsStr::new(""))).color);
        assert!(!Style::from_env(true, Some(OsStr::new("1"))).color);
        assert!(!Style::from_env(false, None).color);
    }

    #[test]
    fn paint_wraps_only_when_colouring() {
        assert_eq!(Style { color: false }.paint(GREEN, "allowed"), "allowed");
        assert_eq!(
            Style { color: true }.paint(GREEN, "allowed"),
            "\x1b[32mallowed\x1b[0m"
        );
    }
}
