//! Pod + config -> RFC 6902 JSON patch + one human sentence per change. Pure: it reads the typed
//! pod, writes paths into the pod's JSON, and is idempotent (its own output yields no
//! operations).

use std::collections::{BTreeSet, HashSet};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Container, PodSpec, Toleration};
use serde_json::{Value, json};

use crate::config::Mutation as MutationConfig;
use crate::detect::{Found, env_var};
use crate::rule_id::Warning;

mod cannot_run;
mod scratch;

pub use scratch::{has_mount_at, scratch_mount, scratch_path};

/// Which rule produced a change (for metrics and tests).
pub use crate::rule_id::RuleId as Rule;

/// One change the patch makes, said in a sentence for `kubectl` users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub rule: Rule,
    /// How many patch operations the change took.
    pub operations: usize,
    pub message: String,
}

/// The result of mutating one pod spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mutation {
    pub patch: Patch,
    pub changes: Vec<Change>,
    /// What the patch cannot fix and the user must (a setting that keeps an Earthly container
    /// from running), each naming the field and the fix. Not patch operations.
    pub warnings: Vec<Warning>,
}

impl Mutation {
    /// True when nothing needs to change.
    pub fn is_empty(&self) -> bool {
        self.patch.0.is_empty()
    }
}

/// Whether a container is already privileged.
pub fn is_privileged(container: &Container) -> bool {
    container
        .security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false)
}

fn ptr(base: &str, tokens: &[&str]) -> PointerBuf {
    // `from_tokens` escapes `~` and `/` in keys such as `earthly.dev/pool`.
    let mut p = PointerBuf::parse(base).unwrap_or_default();
    for t in tokens {
        p.push_back(*t);
    }
    p
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

/// Appends to an array that may be absent: the first append creates it.
struct ArrayAppender {
    path: PointerBuf,
    exists: bool,
}

impl ArrayAppender {
    fn new(path: PointerBuf, exists: bool) -> Self {
        Self { path, exists }
    }

    fn push(&mut self, value: Value) -> PatchOperation {
        if self.exists {
            let mut p = self.path.clone();
            p.push_back("-");
            add(p, value)
        } else {
            self.exists = true;
            add(self.path.clone(), Value::Array(vec![value]))
        }
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    // Serialising k8s-openapi types into a Value cannot fail: they have string keys only.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Whether two tolerations tolerate the same, with the apiserver's defaults filled in (an absent
/// operator is `Equal`): the mutation adds no duplicate, and the admission policies do likewise.
pub(crate) fn same_toleration(a: &Toleration, b: &Toleration) -> bool {
    let op = |t: &Toleration| t.operator.clone().unwrap_or_else(|| "Equal".to_owned());
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    s(&a.key) == s(&b.key)
        && op(a) == op(b)
        && s(&a.value) == s(&b.value)
        && s(&a.effect) == s(&b.effect)
        && a.toleration_seconds == b.toleration_seconds
}

/// Computes the patch for a pod spec found at JSON pointer `spec_path` (`/spec` for a pod,
/// `/spec/template/spec` for a workload), given the Earthly containers [`crate::detect`] found.
pub fn mutate(
    spec: &PodSpec,
    spec_path: &str,
    found: &[Found],
    config: &MutationConfig,
) -> Mutation {
    let mut out = Mutation::default();
    let privileged: Vec<&Found> = found.iter().filter(|f| f.role.needs_privileges()).collect();
    if privileged.is_empty() {
        return out;
    }
    // `spec` or `spec.template.spec`, as messages name fields.
    let field = spec_path.trim_start_matches('/').replace('/', ".");
    if cannot_run::is_windows(spec) {
        out.warnings.push(cannot_run::windows(&field, &privileged));
        return out;
    }
    let mut warnings: Vec<Warning> = cannot_run::host_users(spec, &field, &privileged)
        .into_iter()
        .collect();
    let mut ops = Vec::new();
    let mut record = |ops: &mut Vec<PatchOperation>, new: Vec<PatchOperation>, rule, message| {
        out.changes.push(Change {
            rule,
            operations: new.len(),
            message,
        });
        ops.extend(new);
    };

    let mut volume_names: HashSet<String> = spec
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|v| v.name.clone())
        .collect();
    let mut volumes = ArrayAppender::new(ptr(spec_path, &["volumes"]), spec.volumes.is_some());

    for f in &privileged {
        let Some(c) = f.container(spec) else { continue };
        let index = f.index.to_string();
        let cpath = ptr(spec_path, &[f.list.field(), &index]);
        let cpath = cpath.as_str();
        let what = f.role.describe();
        let cfield = format!("{field}.{}[{index}]", f.list.field());
        warnings.extend(cannot_run::run_as_non_root(spec, &field, c, &cfield));

        // 1. privileged
        if !is_privileged(c) {
            let mut new = Vec::new();
            match &c.security_context {
                None => new.push(add(
                    ptr(cpath, &["securityContext"]),
                    json!({"privileged": true}),
                )),
                Some(sc) => {
                    new.push(add(
                        ptr(cpath, &["securityContext", "privileged"]),
                        json!(true),
                    ));
                    // The apiserver refuses privileged: true next to allowPrivilegeEscalation:
                    // false, so the pod would fail to create after our patch.
                    if sc.allow_privilege_escalation == Some(false) {
                        new.push(add(
                            ptr(cpath, &["securityContext", "allowPrivilegeEscalation"]),
                            json!(true),
                        ));
                    }
                }
            }
            let explicit_false = c
                .security_context
                .as_ref()
                .and_then(|s| s.privileged)
                .is_some();
            let message = if explicit_false {
                format!(
                    "changed privileged: false to true on container {}: the {what} cannot run unprivileged",
                    c.name
                )
            } else {
                format!(
                    "set privileged on container {}: the {what} cannot run unprivileged",
                    c.name
                )
            };
            record(&mut ops, new, Rule::Privileged, message);
        }

        // 2. scratch volume, unless a volume already holds the path
        let (path, fallback) = scratch_path(c, f.family);
        if let Some((i, mount)) = scratch_mount(c, &path) {
            warnings.extend(cannot_run::read_only_scratch(c, &cfield, &path, i, mount));
        } else {
            let base = &config.scratch_volume.name;
            let name = std::iter::once(base.clone())
                .chain((1..).map(|n| format!("{base}-{n}")))
                .find(|n| !volume_names.contains(n))
                .unwrap_or_else(|| base.clone());
            volume_names.insert(name.clone());
            let mut volume = serde_json::Map::with_capacity(2);
            volume.insert("name".to_owned(), json!(name));
            volume.extend(config.scratch_volume.source.clone());
            let volume = Value::Object(volume);
            let mut mounts =
                ArrayAppender::new(ptr(cpath, &["volumeMounts"]), c.volume_mounts.is_some());
            let new = vec![
                volumes.push(volume),
                mounts.push(json!({"name": name, "mountPath": path})),
            ];
            let why = fallback.map(|w| format!(" ({w})")).unwrap_or_default();
            record(
                &mut ops,
                new,
                Rule::ScratchVolume,
                format!(
                    "mounted scratch volume {name} at {path} in container {}{why}",
                    c.name
                ),
            );
        }

        // 3. CNI_MTU
        if let Some(mtu) = config.cni_mtu
            && env_var(c, "CNI_MTU").is_none()
        {
            let mut env = ArrayAppender::new(ptr(cpath, &["env"]), c.env.is_some());
            let new = vec![env.push(json!({"name": "CNI_MTU", "value": mtu.to_string()}))];
            record(
                &mut ops,
                new,
                Rule::CniMtu,
                format!("set CNI_MTU={mtu} on container {}", c.name),
            );
        }
    }

    // 4. placement on the privileged instance group, pod-wide, never overriding the pod.
    let existing = spec.tolerations.as_deref().unwrap_or_default();
    let mut tolerations =
        ArrayAppender::new(ptr(spec_path, &["tolerations"]), spec.tolerations.is_some());
    let mut added: Vec<&Toleration> = Vec::new();
    for t in &config.tolerations {
        if existing
            .iter()
            .chain(added.iter().copied())
            .any(|e| same_toleration(e, t))
        {
            continue;
        }
        added.push(t);
        let new = vec![tolerations.push(to_value(t))];
        let key = t.key.as_deref().unwrap_or("*");
        record(
            &mut ops,
            new,
            Rule::Toleration,
            format!("added toleration for taint {key} so the pod can run on the privileged nodes"),
        );
    }

    let pod_selector = spec.node_selector.as_ref();
    let missing: BTreeSet<(&String, &String)> = config
        .node_selector
        .iter()
        .filter(|(k, _)| pod_selector.is_none_or(|s| !s.contains_key(*k)))
        .collect();
    if !missing.is_empty() {
        let new = if pod_selector.is_none() {
            vec![add(
                ptr(spec_path, &["nodeSelector"]),
                to_value(&config.node_selector),
            )]
        } else {
            missing
                .iter()
                .map(|(k, v)| add(ptr(spec_path, &["nodeSelector", k.as_str()]), json!(v)))
                .collect()
        };
        let pairs: Vec<String> = missing.iter().map(|(k, v)| format!("{k}={v}")).collect();
        record(
            &mut ops,
            new,
            Rule::NodeSelector,
            format!(
                "added nodeSelector {} for the privileged nodes",
                pairs.join(", ")
            ),
        );
    }

    if let Some(affinity) = &config.node_affinity {
        let new = match &spec.affinity {
            None => Some(add(
                ptr(spec_path, &["affinity"]),
                json!({"nodeAffinity": to_value(affinity)}),
            )),
            Some(a) if a.node_affinity.is_none() => Some(add(
                ptr(spec_path, &["affinity", "nodeAffinity"]),
                to_value(affinity),
            )),
            Some(_) => None,
        };
        if let Some(op) = new {
            record(
                &mut ops,
                vec![op],
                Rule::NodeAffinity,
                "added node affinity for the privileged nodes".to_owned(),
            );
        }
    }

    out.patch = Patch(ops);
    out.warnings = warnings;
    out
}

#[cfg(test)]
mod tests;
