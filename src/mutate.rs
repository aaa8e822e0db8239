//! Pod + config -> RFC 6902 JSON patch + one human sentence per change. Pure: it reads the typed
//! pod, writes paths into the pod's JSON, and is idempotent (its own output yields no
//! operations).

use std::collections::{BTreeSet, HashSet};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Container, PodSpec, Toleration};
use serde_json::{Value, json};

use crate::config::{DEFAULT_SCRATCH_PATH, Mutation as MutationConfig};
use crate::detect::{ContainerList, Found, env_var};

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
}

impl Mutation {
    /// True when nothing needs to change.
    pub fn is_empty(&self) -> bool {
        self.patch.0.is_empty()
    }
}

/// The scratch path a container wants: its literal `EARTHLY_TMP_DIR` when that is an absolute
/// path, else `/tmp/earthly`. The second value explains a fallback the user should know about.
pub fn scratch_path(container: &Container) -> (String, Option<&'static str>) {
    match env_var(container, "EARTHLY_TMP_DIR") {
        None => (DEFAULT_SCRATCH_PATH.to_owned(), None),
        Some(e) if e.value_from.is_some() => (
            DEFAULT_SCRATCH_PATH.to_owned(),
            Some("EARTHLY_TMP_DIR comes from a reference the webhook cannot read"),
        ),
        Some(e) => {
            let v = e.value.as_deref().unwrap_or("").trim();
            if v.starts_with('/') {
                (normalise_path(v), None)
            } else {
                (
                    DEFAULT_SCRATCH_PATH.to_owned(),
                    Some("EARTHLY_TMP_DIR is not an absolute path"),
                )
            }
        }
    }
}

/// `/tmp/earthly/` and `/tmp//earthly` are the same mount point as `/tmp/earthly`.
fn normalise_path(p: &str) -> String {
    let parts: Vec<&str> = path_segments(p).collect();
    format!("/{}", parts.join("/"))
}

/// The segments of a path that name a directory (empty ones and `.` name none).
fn path_segments(p: &str) -> impl Iterator<Item = &str> {
    p.split('/').filter(|s| !s.is_empty() && *s != ".")
}

/// Whether a container has something mounted exactly at `path`.
pub fn has_mount_at(container: &Container, path: &str) -> bool {
    container
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        // Compared segment by segment: no allocation per mount.
        .any(|m| path_segments(&m.mount_path).eq(path_segments(path)))
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

fn same_toleration(a: &Toleration, b: &Toleration) -> bool {
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
        let list = match f.list {
            ContainerList::Containers => &spec.containers,
            ContainerList::InitContainers => match &spec.init_containers {
                Some(c) => c,
                None => continue,
            },
        };
        let Some(c) = list.get(f.index) else { continue };
        let index = f.index.to_string();
        let cpath = ptr(spec_path, &[f.list.field(), &index]);
        let cpath = cpath.as_str();
        let what = f.role.describe();

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

        // 2. scratch volume
        let (path, fallback) = scratch_path(c);
        if !has_mount_at(c, &path) {
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::detect::Detector;
    use k8s_openapi::api::core::v1::Pod;

    fn config(yaml: &str) -> Config {
        Config::from_yaml(yaml, "test").expect("valid config")
    }

    /// Mutates a pod given as JSON, applies the patch, and returns the new pod JSON and changes.
    fn run(pod: Value, cfg: &Config) -> (Value, Mutation) {
        let typed: Pod = serde_json::from_value(pod.clone()).expect("pod");
        let spec = typed.spec.expect("spec");
        let found = Detector::new(&cfg.detection)
            .expect("detector")
            .classify(typed.metadata.annotations.as_ref(), &spec)
            .expect("classify");
        let m = mutate(&spec, "/spec", &found, &cfg.mutation);
        let mut doc = pod;
        json_patch::patch(&mut doc, &m.patch).expect("patch applies");
        serde_json::from_value::<Pod>(doc.clone()).expect("result is a Pod");
        (doc, m)
    }

    fn again(doc: Value, cfg: &Config) -> Mutation {
        run(doc, cfg).1
    }

    fn bare(image: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "c", "image": image}]}})
    }

    #[test]
    fn bare_all_in_one_gets_privileged_and_scratch() {
        let cfg = Config::default();
        let (doc, m) = run(bare("earthly/earthly:v0.8.15"), &cfg);
        let c = &doc["spec"]["containers"][0];
        assert_eq!(c["securityContext"]["privileged"], json!(true));
        assert_eq!(
            c["volumeMounts"],
            json!([{"name": "earthly-tmp", "mountPath": "/tmp/earthly"}])
        );
        assert_eq!(
            doc["spec"]["volumes"],
            json!([{"name": "earthly-tmp", "emptyDir": {}}])
        );
        assert_eq!(m.changes.len(), 2);
        assert!(again(doc, &cfg).is_empty());
    }

    #[test]
    fn unrelated_pod_gets_no_patch() {
        let (_, m) = run(bare("nginx"), &Config::default());
        assert!(m.is_empty());
        assert!(m.changes.is_empty());
    }

    #[test]
    fn explicit_unprivileged_is_flipped_and_said() {
        let mut pod = bare("earthly/buildkitd");
        pod["spec"]["containers"][0]["securityContext"] =
            json!({"privileged": false, "allowPrivilegeEscalation": false, "runAsUser": 0});
        let (doc, m) = run(pod, &Config::default());
        let sc = &doc["spec"]["containers"][0]["securityContext"];
        assert_eq!(sc["privileged"], json!(true));
        assert_eq!(sc["allowPrivilegeEscalation"], json!(true));
        assert_eq!(sc["runAsUser"], json!(0));
        assert!(
            m.changes[0]
                .message
                .starts_with("changed privileged: false to true on container c")
        );
    }

    #[test]
    fn earthly_tmp_dir_moves_the_mount() {
        let mut pod = bare("earthly/earthly");
        pod["spec"]["containers"][0]["env"] =
            json!([{"name": "EARTHLY_TMP_DIR", "value": "/scratch/"}]);
        let (doc, _) = run(pod, &Config::default());
        assert_eq!(
            doc["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
            json!("/scratch")
        );
    }

    #[test]
    fn existing_mount_at_scratch_path_is_kept() {
        let mut pod = bare("earthly/buildkitd");
        pod["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "mine", "mountPath": "/tmp/earthly/"}]);
        pod["spec"]["volumes"] = json!([{"name": "mine", "emptyDir": {}}]);
        let (doc, m) = run(pod, &Config::default());
        assert_eq!(doc["spec"]["volumes"].as_array().map(Vec::len), Some(1));
        assert!(m.changes.iter().all(|c| c.rule != Rule::ScratchVolume));
    }

    #[test]
    fn volume_name_collision_gets_a_suffix() {
        let mut pod = bare("earthly/earthly");
        pod["spec"]["volumes"] = json!([{"name": "earthly-tmp", "configMap": {"name": "x"}}]);
        let (doc, _) = run(pod, &Config::default());
        assert_eq!(doc["spec"]["volumes"][1]["name"], json!("earthly-tmp-1"));
        assert_eq!(
            doc["spec"]["containers"][0]["volumeMounts"][0]["name"],
            json!("earthly-tmp-1")
        );
    }

    #[test]
    fn two_earthly_containers_get_separate_volumes() {
        let mut pod = bare("earthly/buildkitd");
        pod["spec"]["initContainers"] = json!([{"name": "warm", "image": "earthly/earthly"}]);
        let (doc, m) = run(pod, &Config::default());
        assert_eq!(doc["spec"]["volumes"][0]["name"], json!("earthly-tmp"));
        assert_eq!(doc["spec"]["volumes"][1]["name"], json!("earthly-tmp-1"));
        assert_eq!(
            doc["spec"]["initContainers"][0]["securityContext"]["privileged"],
            json!(true)
        );
        assert!(again(doc, &Config::default()).is_empty(), "{:?}", m.changes);
    }

    #[test]
    fn configured_volume_source_is_used() {
        let cfg = config(
            "mutation: {scratchVolume: {source: {emptyDir: {sizeLimit: 50Gi, medium: Memory}}}}",
        );
        let (doc, _) = run(bare("earthly/earthly"), &cfg);
        assert_eq!(
            doc["spec"]["volumes"][0],
            json!({"name": "earthly-tmp", "emptyDir": {"sizeLimit": "50Gi", "medium": "Memory"}})
        );
    }

    #[test]
    fn cni_mtu_is_added_once() {
        let cfg = config("mutation: {cniMtu: 1450}");
        let (doc, m) = run(bare("earthly/earthly"), &cfg);
        assert_eq!(
            doc["spec"]["containers"][0]["env"],
            json!([{"name": "CNI_MTU", "value": "1450"}])
        );
        assert!(
            m.changes
                .iter()
                .any(|c| c.message == "set CNI_MTU=1450 on container c")
        );
        assert!(again(doc, &cfg).is_empty());
    }

    #[test]
    fn container_cni_mtu_is_not_overridden() {
        let cfg = config("mutation: {cniMtu: 1450}");
        let mut pod = bare("earthly/earthly");
        pod["spec"]["containers"][0]["env"] = json!([{"name": "CNI_MTU", "value": "1400"}]);
        let (doc, _) = run(pod, &cfg);
        assert_eq!(
            doc["spec"]["containers"][0]["env"],
            json!([{"name": "CNI_MTU", "value": "1400"}])
        );
    }

    #[test]
    fn tolerations_are_added_unless_equal_exists() {
        let cfg = config(
            "mutation: {tolerations: [{key: earthly.dev/privileged, operator: Exists, effect: NoSchedule}, {key: b, value: x}]}",
        );
        let mut pod = bare("earthly/earthly");
        pod["spec"]["tolerations"] = json!([{"key": "b", "operator": "Equal", "value": "x"}]);
        let (doc, m) = run(pod, &cfg);
        assert_eq!(doc["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            m.changes
                .iter()
                .filter(|c| c.rule == Rule::Toleration)
                .count(),
            1
        );
        assert!(again(doc, &cfg).is_empty());
    }

    #[test]
    fn node_selector_keys_are_escaped_and_never_overridden() {
        let cfg = config("mutation: {nodeSelector: {earthly.dev/pool: privileged, zone: a}}");
        let mut pod = bare("earthly/earthly");
        pod["spec"]["nodeSelector"] = json!({"zone": "b"});
        let (doc, m) = run(pod, &cfg);
        assert_eq!(
            doc["spec"]["nodeSelector"],
            json!({"zone": "b", "earthly.dev/pool": "privileged"})
        );
        let ops = serde_json::to_string(&m.patch).expect("json");
        assert!(
            ops.contains("/spec/nodeSelector/earthly.dev~1pool"),
            "{ops}"
        );
    }

    #[test]
    fn node_affinity_only_when_pod_has_none() {
        let cfg = config(
            "mutation: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [priv]}]}]}}}",
        );
        let (doc, _) = run(bare("earthly/earthly"), &cfg);
        assert!(doc["spec"]["affinity"]["nodeAffinity"].is_object());
        let mut pod = bare("earthly/earthly");
        pod["spec"]["affinity"] =
            json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}});
        let (_, m) = run(pod, &cfg);
        assert!(m.changes.iter().all(|c| c.rule != Rule::NodeAffinity));
    }

    #[test]
    fn remote_client_gets_nothing_even_with_placement_configured() {
        let cfg = config("mutation: {cniMtu: 1450, nodeSelector: {pool: priv}}");
        let mut pod = bare("earthly/earthly");
        pod["spec"]["containers"][0]["env"] =
            json!([{"name": "BUILDKIT_HOST", "value": "tcp://bk:8372"}]);
        let (_, m) = run(pod, &cfg);
        assert!(m.is_empty());
    }

    #[test]
    fn null_arrays_are_created() {
        let mut pod = bare("earthly/earthly");
        pod["spec"]["volumes"] = Value::Null;
        pod["spec"]["containers"][0]["volumeMounts"] = Value::Null;
        let (doc, _) = run(pod, &Config::default());
        assert_eq!(doc["spec"]["volumes"].as_array().map(Vec::len), Some(1));
    }
}
