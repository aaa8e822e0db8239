//! The MutatingAdmissionPolicy (`admissionregistration.k8s.io/v1beta1`, Kubernetes 1.34+): the
//! pod mutation of `src/mutate.rs` as one JSONPatch expression over the detection variables of
//! [`super::cel`]. It gives the same resulting pod as the webhook's RFC 6902 patch (the ops
//! differ only in how arrays are appended), and nothing on a pod it already mutated, so
//! `reinvocationPolicy: IfNeeded` is safe. It uses `lists.range` and `flatten` (the CEL lists
//! extension Kubernetes serves from 1.34, like this API).

use serde_json::{Value, json};

use super::cel::{self, Template, Variable, lit, lits};
use crate::config::{Config, Mutation};
use crate::family::Family;

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

/// The segments of a path that name a directory, as `mutate::scratch` counts them.
fn segments(path: &str) -> String {
    format!("{path}.split('/').filter(x, x != '' && x != '.')")
}

/// The scratch path of container `t.p.c` from its last tmp-dir entry `t.e` (see
/// `mutate::scratch_path`): an absolute literal value, normalised, else the family default.
fn scratch_path() -> String {
    let last = "t.e[size(t.e) - 1]";
    let default = format!(
        "(t.p.family == 'earthbuild' ? {} : {})",
        lit(Family::Earthbuild.default_scratch_path()),
        lit(Family::Earthly.default_scratch_path())
    );
    format!(
        "size(t.e) == 0 || has({last}.valueFrom) || !(has({last}.value) && {last}.value.trim().startsWith('/')) ? {default} \
         : '/' + {}.join('/')",
        segments(&format!("{last}.value.trim()"))
    )
}

/// `dir` is `path` or lies above it, compared segment by segment.
fn within(path: &str, dir: &str) -> String {
    let (p, d) = (segments(path), segments(dir));
    format!("(size({d}) <= size({p}) && lists.range(size({d})).all(n, {d}[n] == {p}[n]))")
}

fn tmp_dir_vars(family: Family) -> String {
    lits(family.tmp_dir_vars().iter().copied())
}

/// The variables after detection's: the containers to make privileged, their scratch paths,
/// and the patch groups.
fn variables(m: &Mutation) -> Vec<Variable> {
    let spec = "object.spec";
    let first_var = format!(
        "(t.p.family == 'earthbuild' ? {} : {}).filter(v, has(t.p.c.env) && t.p.c.env.exists(e, e.name == v))",
        tmp_dir_vars(Family::Earthbuild),
        tmp_dir_vars(Family::Earthly)
    )
    .replace("t.p.", "p.");
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
            name: "tmpDirEntries",
            expression: format!(
                "variables.privileged.map(p, {{'p': p, 'e': size({first_var}) == 0 ? [] : p.c.env.filter(e, e.name == {first_var}[0])}})"
            ),
        },
        Variable {
            name: "scratch",
            expression: format!(
                "variables.tmpDirEntries.map(t, {{'p': t.p, 'path': {}}})",
                scratch_path()
            ),
        },
        Variable {
            name: "needScratch",
            expression: format!(
                "variables.scratch.filter(s, !(has(s.p.c.volumeMounts) && s.p.c.volumeMounts.exists(m, {})))",
                within("s.path", "m.mountPath")
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
