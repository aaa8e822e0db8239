//! `-o sarif`: the report as SARIF 2.1.0, the format GitHub code scanning and other CI
//! dashboards read. One `rule` per rule id `check` can report, one `result` per finding, located
//! at the file and line of the offending field (or of the object).

use serde_json::{Value, json};

use super::Report;
use strum::IntoEnumIterator;

use super::findings::{Level, findings};
use super::input::STDIN_NAME;
use crate::rule_id::RuleId;

/// The schema the output follows (the OASIS 2.1.0 final schema, as SchemaStore publishes it).
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// A file name as a URI reference: relative paths stay relative (GitHub resolves them against
/// the repository root), absolute ones become `file://` URIs, and every byte outside RFC 3986's
/// unreserved set and `/` is percent-encoded.
pub fn uri_of(file: &str) -> String {
    let encoded: String = file
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let encoded = encoded
        .strip_prefix("./")
        .map_or(encoded.clone(), str::to_owned);
    if file.starts_with('/') {
        format!("file://{encoded}")
    } else {
        encoded
    }
}

/// The SARIF log, pretty-printed, ending in a newline.
pub fn sarif(report: &Report) -> String {
    let rules: Vec<Value> = RuleId::iter()
        .map(|r| {
            json!({
                "id": r.as_str(),
                "name": format!("{r:?}"),
                "shortDescription": {"text": r.help()},
                "help": {"text": r.fix()},
                "defaultConfiguration": {"level": Level::of(r).as_str()},
            })
        })
        .collect();
    let mut results = Vec::new();
    for o in &report.objects {
        for f in findings(o, report.mode) {
            let mut physical = json!({"artifactLocation": {"uri": uri_of(&o.origin.file)}});
            if let Some(line) = f.line {
                physical["region"] = json!({"startLine": line});
            }
            let mut location = json!({
                "logicalLocations": [{"fullyQualifiedName": o.object_ref(), "kind": "object"}],
            });
            // Standard input has no file a viewer could open.
            if o.origin.file != STDIN_NAME {
                location["physicalLocation"] = physical;
            }
            results.push(json!({
                "ruleId": f.rule.as_str(),
                "ruleIndex": RuleId::iter().position(|r| r == f.rule),
                "level": f.level.as_str(),
                "message": {"text": f.message},
                "locations": [location],
            }));
        }
    }
    let log = json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "earthly-webhook",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "automationDetails": {"id": format!("earthly-webhook-check/{}/", report.mode.as_str())},
            "results": results,
        }],
    });
    // Plain data with string keys: serialisation cannot fail.
    let mut s = serde_json::to_string_pretty(&log).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_become_uri_references() {
        assert_eq!(uri_of("k8s/ci job.yaml"), "k8s/ci%20job.yaml");
        assert_eq!(uri_of("./a.yaml"), "a.yaml");
        assert_eq!(uri_of("/repo/a#b.yaml"), "file:///repo/a%23b.yaml");
    }
}
