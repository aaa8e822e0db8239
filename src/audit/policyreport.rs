//! The audit as PolicyReport objects (`wgpolicyk8s.io/v1alpha2`, the Policy WG's format read by
//! Policy Reporter and `kubectl get policyreports`), one per namespace.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::judge::Audited;
use super::scope::Target;
use crate::config::Mode;

pub const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
pub const KIND: &str = "PolicyReport";
/// The name of the report in each namespace.
pub const REPORT_NAME: &str = "earthly-webhook";
/// The `policy` of every result, and the field manager of `--write-reports`.
pub const POLICY: &str = "earthly-webhook";
/// The label that marks the reports this tool owns, so a namespace that left the scope can
/// have its report found and deleted.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "earthly-webhook");

fn result(object: &Audited, rule: &str, outcome: &str, message: &str, timestamp: &Value) -> Value {
    let mut resource = json!({
        "apiVersion": object.api_version,
        "kind": object.kind,
        "namespace": object.namespace,
        "name": object.name,
    });
    if let Some(uid) = &object.uid {
        resource["uid"] = json!(uid);
    }
    let mut r = json!({
        "policy": POLICY,
        "rule": rule,
        "result": outcome,
        "message": message,
        "category": "Earthly CI",
        "scored": true,
        "resources": [resource],
        "properties": {
            "mode": object.mode.as_str(),
            "verdict": object.verdict.as_str(),
        },
        "timestamp": timestamp,
    });
    if outcome == "fail" {
        // A violation the webhook would refuse is worse than one it would let through.
        r["severity"] = json!(if object.mode == Mode::Enforce {
            "high"
        } else {
            "medium"
        });
    }
    r
}

/// The results about one object: `fail` per violation (rule id as `rule`), `warn` per warning
/// (`rule: warning`) and per mutation (`rule: mutation`), `error` when it could not be judged,
/// and a single `pass` when nothing was found.
pub fn results(object: &Audited, timestamp: &Value) -> Vec<Value> {
    let f = &object.findings;
    if f.is_empty() {
        return vec![result(
            object,
            "policy",
            "pass",
            &format!("{} follows the policy", object.object_ref()),
            timestamp,
        )];
    }
    let mut out = Vec::new();
    for v in &f.violations {
        out.push(result(object, &v.rule, "fail", &v.message, timestamp));
    }
    for w in &f.warnings {
        out.push(result(object, "warning", "warn", w, timestamp));
    }
    for m in &f.mutations {
        out.push(result(object, "mutation", "warn", m, timestamp));
    }
    for e in &f.errors {
        out.push(result(object, "unreadable", "error", e, timestamp));
    }
    out
}

/// `{seconds, nanos}` of `now`, the CRD's timestamp shape.
pub fn timestamp(now: SystemTime) -> Value {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    json!({"seconds": d.as_secs(), "nanos": d.subsec_nanos()})
}

/// The PolicyReport of one namespace.
pub fn report(target: &Target, objects: &[Audited], now: SystemTime) -> Value {
    let ts = timestamp(now);
    let results: Vec<Value> = objects.iter().flat_map(|o| results(o, &ts)).collect();
    let count = |outcome: &str| results.iter().filter(|r| r["result"] == outcome).count();
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": REPORT_NAME,
            "namespace": target.name,
            "labels": {
                MANAGED_BY.0: MANAGED_BY.1,
                "earthly.dev/policy-mode": target.mode.as_str(),
            },
        },
        "summary": {
            "pass": count("pass"),
            "fail": count("fail"),
            "warn": count("warn"),
            "error": count("error"),
            "skip": 0,
        },
        "results": results,
    })
}
