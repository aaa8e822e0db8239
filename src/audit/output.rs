//! The ways `audit` prints a scan: text for people, JSON and YAML for machines, and the
//! PolicyReport objects.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use super::judge::Audited;
use super::policyreport;
use super::scope::Target;
use crate::check::Outcome;
use crate::config::Mode;

/// Version of the `-o json` layout; bumped only when a field changes meaning or goes.
pub const JSON_REPORT_VERSION: u32 = 1;

/// `-o`: what `audit` prints on standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A line per object with its verdict, then its findings.
    Text,
    /// A JSON report (objects carry `verdict` and `warnings` exactly as `check -o json`).
    Json,
    /// The JSON report as YAML.
    Yaml,
    /// The PolicyReport objects (wgpolicyk8s.io/v1alpha2), one per namespace, as YAML.
    Policyreport,
}

/// What the audit found in one namespace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamespaceAudit {
    #[serde(rename = "name")]
    pub name: String,
    pub mode: Mode,
    #[serde(skip)]
    pub target: Target,
    pub objects: Vec<Audited>,
}

/// Counts over a scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub namespaces: usize,
    pub objects: usize,
    /// Objects with at least one violation.
    pub violating: usize,
    /// Of those, the ones the webhook would refuse (enforce-mode namespaces).
    pub denied: usize,
    pub violations: usize,
    pub warnings: usize,
    pub mutations: usize,
    pub errors: usize,
}

/// Counts the findings of a scan.
pub fn totals(scan: &[NamespaceAudit]) -> Totals {
    let mut t = Totals {
        namespaces: scan.len(),
        ..Totals::default()
    };
    for o in scan.iter().flat_map(|n| &n.objects) {
        let f = &o.findings;
        t.objects += 1;
        t.violating += usize::from(!f.violations.is_empty());
        t.denied += usize::from(o.verdict == Outcome::Denied);
        t.violations += f.violations.len();
        t.warnings += f.warnings.len();
        t.mutations += f.mutations.len();
        t.errors += f.errors.len();
    }
    t
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The text report: per namespace, a line per object and its findings indented below.
pub fn text(scan: &[NamespaceAudit]) -> String {
    let mut out = String::new();
    for ns in scan {
        out.push_str(&format!(
            "namespace {} ({} mode): {}\n",
            ns.name,
            ns.mode.as_str(),
            plural(ns.objects.len(), "object", "objects")
        ));
        for o in &ns.objects {
            out.push_str(&format!("  {}: {}\n", o.object_ref(), o.verdict.as_str()));
            let f = &o.findings;
            for v in &f.violations {
                out.push_str(&format!("    violation [{}]: {}\n", v.rule, v.message));
            }
            for m in &f.mutations {
                out.push_str(&format!("    mutation: {m}\n"));
            }
            for w in &f.warnings {
                out.push_str(&format!("    warning: {w}\n"));
            }
            for e in &f.errors {
                out.push_str(&format!("    error: {e}\n"));
            }
        }
    }
    let t = totals(scan);
    out.push_str(&format!(
        "\n{} and {} audited: {} break the policy ({} would be denied), {}, {}, {}\n",
        plural(t.namespaces, "namespace", "namespaces"),
        plural(t.objects, "object", "objects"),
        t.violating,
        t.denied,
        plural(t.violations, "violation", "violations"),
        plural(t.warnings, "warning", "warnings"),
        plural(t.mutations, "mutation", "mutations"),
    ));
    out
}

#[derive(Serialize)]
struct JsonReport<'a> {
    version: u32,
    summary: Totals,
    namespaces: &'a [NamespaceAudit],
}

fn report(scan: &[NamespaceAudit]) -> JsonReport<'_> {
    JsonReport {
        version: JSON_REPORT_VERSION,
        summary: totals(scan),
        namespaces: scan,
    }
}

/// The JSON report, pretty-printed, ending in a newline.
pub fn json(scan: &[NamespaceAudit]) -> String {
    let mut s = serde_json::to_string_pretty(&report(scan))
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot encode the report: {e}\"}}"));
    s.push('\n');
    s
}

fn to_yaml(value: &impl Serialize) -> String {
    serde_yaml_ng::to_string(value).unwrap_or_else(|e| format!("# cannot encode: {e}\n"))
}

/// The JSON report as YAML.
pub fn yaml(scan: &[NamespaceAudit]) -> String {
    to_yaml(&report(scan))
}

/// The PolicyReports of the scan.
pub fn policy_reports(scan: &[NamespaceAudit], now: SystemTime) -> Vec<Value> {
    scan.iter()
        .map(|ns| policyreport::report(&ns.target, &ns.objects, now))
        .collect()
}

/// The PolicyReports as a YAML stream.
pub fn policy_reports_yaml(scan: &[NamespaceAudit], now: SystemTime) -> String {
    policy_reports(scan, now)
        .iter()
        .map(|r| format!("---\n{}", to_yaml(r)))
        .collect()
}
