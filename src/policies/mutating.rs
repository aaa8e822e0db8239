//! The MutatingAdmissionPolicy (`admissionregistration.k8s.io/v1beta1`, Kubernetes 1.34+): the
//! pod mutation of `src/mutate.rs` as one JSONPatch expression over the detection variables of
//! [`super::cel`]. It gives the same resulting pod as the webhook's RFC 6902 patch (the ops
//! differ only in how arrays are appended), and nothing on a pod it already mutated, so
//! `reinvocationPolicy: IfNeeded` is safe. It uses `lists.range` and `flatten` (the CEL lists
//! extension Kubernetes serves from 1.34, like this API).

use serde_json::{Value, json};

use super::cel::{self, Template, Variable, lit};
use super::scratch;
use crate::config::{Config, Mutation};

/// The policy's name, which its binding names.
pub const NAME: &str = "earthly-webhook-pods";

/// A JSON value as a CEL literal.
pub fn literal(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lit(s),
        Value::Array(a) => format!("[{}]", a.iter().map(literal).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", lit(k), literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn patch(path: &str, value: &str) -> String {
    format!("JSONPatch{{op: 'add', path: {path}, value: {value}}}")
}

/// The variables after detection's: the containers to make privileged, their scratch paths,
/// and the patch groups.
fn variables(m: &Mutation) -> Vec<Variable> {
    let spec = "object.spec";
    let volume = |name: &str| {
        let mut source = m.scratch_volume.source.clone();
        source.remove("name");
        let mut lit_source = literal(&Value::Object(source));
        lit_source.insert_str(1, &format!("'name': {name}, "));
        lit_source
    };
    let mount = "{'name': variables.freeNames[k], 'mountPath': variables.needScratch[k].path}";
    let s = "variables.needScratch[k]";
    let mut out = vec![
        Variable {
            name: "ninit",
            expression: format!("has({spec}.initContainers) ? size({spec}.initContainers) : 0"),
        },
        Variable {
            name: "privileged",
            expression: format!(
                "variables.roleError != '' || (has({spec}.os) && {spec}.os.name.lowerAscii() == 'windows') ? [] \
                 : lists.range(size(variables.containers)).filter(n, variables.containers[n].role in ['all-in-one', 'buildkitd']).map(n, \
                 {{'c': variables.kinds[n].c, 'family': variables.containers[n].family, \
                 'path': '/spec/' + (n < variables.ninit ? 'initContainers/' + string(n) : 'containers/' + string(n - variables.ninit))}})"
            ),
        },
        Variable {
            name: "scratch",
            expression: format!(
                "variables.privileged.map(p, {{'p': p, 'path': {}}})",
                scratch::path("p.c", "p.family")
            ),
        },
        Variable {
            name: "needScratch",
            expression: format!(
                "variables.scratch.filter(s, !{})",
                scratch::mounted("s.p.c", "s.path")
            ),
        },
        Variable {
            name: "freeNames",
            expression: format!(
                "([{base}] + lists.range(size(variables.needScratch) + (has({spec}.volumes) ? size({spec}.volumes) : 0)).map(n, {base} + '-' + string(n + 1)))\
                 .filter(x, !(has({spec}.volumes) && {spec}.volumes.exists(v, v.name == x)))",
                base = lit(&m.scratch_volume.name)
            ),
        },
        Variable {
            name: "privilegedOps",
            expression: format!(
                "variables.privileged.filter(p, !(has(p.c.securityContext) && has(p.c.securityContext.privileged) && p.c.securityContext.privileged))\
                 .map(p, !has(p.c.securityContext) ? [{}] : [{}] + \
                 (has(p.c.securityContext.allowPrivilegeEscalation) && !p.c.securityContext.allowPrivilegeEscalation ? [{}] : [])).flatten()",
                patch("p.path + '/securityContext'", "{'privileged': true}"),
                patch("p.path + '/securityContext/privileged'", "true"),
                patch(
                    "p.path + '/securityContext/allowPrivilegeEscalation'",
                    "true"
                ),
            ),
        },
        Variable {
            name: "scratchOps",
            expression: format!(
                "(has({spec}.volumes) ? lists.range(size(variables.needScratch)).map(k, {}) \
                 : size(variables.needScratch) == 0 ? [] : [{}]) + \
                 lists.range(size(variables.needScratch)).map(k, has({s}.p.c.volumeMounts) ? {} : {})",
                patch("'/spec/volumes/-'", &volume("variables.freeNames[k]")),
                patch(
                    "'/spec/volumes'",
                    &format!(
                        "lists.range(size(variables.needScratch)).map(k, {})",
                        volume("variables.freeNames[k]")
                    )
                ),
                patch(&format!("{s}.p.path + '/volumeMounts/-'"), mount),
                patch(
                    &format!("{s}.p.path + '/volumeMounts'"),
                    &format!("[{mount}]")
                ),
            ),
        },
    ];
    out.push(Variable {
        name: "envOps",
        expression: match m.cni_mtu {
            None => "[]".to_owned(),
            Some(mtu) => {
                let entry = literal(&json!({"name": "CNI_MTU", "value": mtu.to_string()}));
                format!(
                    "variables.privileged.filter(p, !(has(p.c.env) && p.c.env.exists(e, e.name == 'CNI_MTU')))\
                     .map(p, has(p.c.env) ? {} : {})",
                    patch("p.path + '/env/-'", &entry),
                    patch("p.path + '/env'", &format!("[{entry}]")),
                )
            }
        },
    });
    out.extend(super::placement::variables(m));
    out
}

/// The mutating policy.
pub fn policy(config: &Config) -> Value {
    let mut variables = cel::detection(Template::POD, &config.detection);
    variables.extend(self::variables(&config.mutation));
    let variables: Vec<Value> = variables
        .iter()
        .map(|v| json!({"name": v.name, "expression": v.expression}))
        .collect();
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1beta1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {
            "name": NAME,
            "labels": {"app.kubernetes.io/managed-by": "earthly-webhook-policies"},
        },
        "spec": {
            "failurePolicy": "Fail",
            // A later mutation may add containers: this policy then runs again, and changes
            // nothing it already changed.
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": {
                "resourceRules": [{
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods"],
                    "operations": ["CREATE"],
                }],
                "matchPolicy": "Equivalent",
            },
            "variables": variables,
            "mutations": [{
                "patchType": "JSONPatch",
                "jsonPatch": {"expression":
                    "size(variables.privileged) == 0 ? [] : variables.privilegedOps + variables.scratchOps + variables.envOps + \
                     variables.tolerationOps + variables.nodeSelectorOps + variables.nodeAffinityOps"},
            }],
        },
    })
}
