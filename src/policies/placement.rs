//! The pod-wide part of the mutation as CEL: the configured tolerations (each only when an equal
//! one is not there), nodeSelector entries for keys the pod does not set, and node affinity for
//! a pod that has none, as `src/mutate.rs` adds them.

use k8s_openapi::api::core::v1::Toleration;
use serde_json::json;

use super::cel::{Variable, lit, lits};
use super::mutating::literal;
use crate::config::Mutation;
use crate::mutate::same_toleration;

/// `e` (a toleration of the pod) equals `t` as `mutate::same_toleration` compares them.
fn same(t: &Toleration) -> String {
    let s = |field: &str, v: &Option<String>, default: &str| {
        format!(
            "(has(e.{field}) ? e.{field} : {}) == {}",
            lit(default),
            lit(v.as_deref().unwrap_or(default))
        )
    };
    let seconds = match t.toleration_seconds {
        None => "!has(e.tolerationSeconds)".to_owned(),
        Some(n) => format!("(has(e.tolerationSeconds) && e.tolerationSeconds == {n})"),
    };
    [
        s("key", &t.key, ""),
        s("operator", &t.operator, "Equal"),
        s("value", &t.value, ""),
        s("effect", &t.effect, ""),
        seconds,
    ]
    .join(" && ")
}

/// `tolerationOps`, `nodeSelectorOps`, `nodeAffinityOps`.
pub fn variables(m: &Mutation) -> Vec<Variable> {
    let spec = "object.spec";
    // A configured toleration equal to an earlier one is never added twice.
    let mut distinct: Vec<&Toleration> = Vec::new();
    for t in &m.tolerations {
        if !distinct.iter().any(|d| same_toleration(d, t)) {
            distinct.push(t);
        }
    }
    let missing: Vec<String> = distinct
        .iter()
        .map(|t| {
            let value = literal(&serde_json::to_value(t).unwrap_or_default());
            format!(
                "(has({spec}.tolerations) && {spec}.tolerations.exists(e, {}) ? [] : [{value}])",
                same(t)
            )
        })
        .collect();
    let tolerations = if missing.is_empty() {
        "[]".to_owned()
    } else {
        let missing = missing.join(" + ");
        format!(
            "has({spec}.tolerations) ? ({missing}).map(t, JSONPatch{{op: 'add', path: '/spec/tolerations/-', value: t}}) \
             : [JSONPatch{{op: 'add', path: '/spec/tolerations', value: {missing}}}]"
        )
    };
    let selector = if m.node_selector.is_empty() {
        "[]".to_owned()
    } else {
        let map = literal(&json!(m.node_selector));
        format!(
            "!has({spec}.nodeSelector) ? [JSONPatch{{op: 'add', path: '/spec/nodeSelector', value: {map}}}] \
             : {}.filter(k, !(k in {spec}.nodeSelector)).map(k, JSONPatch{{op: 'add', \
             path: '/spec/nodeSelector/' + k.replace('~', '~0').replace('/', '~1'), value: {map}[k]}})",
            lits(m.node_selector.keys().map(String::as_str))
        )
    };
    let affinity = match &m.node_affinity {
        None => "[]".to_owned(),
        Some(a) => {
            let a = literal(&serde_json::to_value(a).unwrap_or_default());
            format!(
                "!has({spec}.affinity) ? [JSONPatch{{op: 'add', path: '/spec/affinity', value: {{'nodeAffinity': {a}}}}}] \
                 : !has({spec}.affinity.nodeAffinity) ? [JSONPatch{{op: 'add', path: '/spec/affinity/nodeAffinity', value: {a}}}] : []"
            )
        }
    };
    vec![
        Variable {
            name: "tolerationOps",
            expression: tolerations,
        },
        Variable {
            name: "nodeSelectorOps",
            expression: selector,
        },
        Variable {
            name: "nodeAffinityOps",
            expression: affinity,
        },
    ]
}
