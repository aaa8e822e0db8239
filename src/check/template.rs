//! Pod templates: where each workload kind keeps one, the Pod its controller would create from
//! it, and moving that Pod's patch back onto the template.

use json_patch::jsonptr::{Pointer, PointerBuf};
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::{Value, json};

use super::input::Object;
use super::request::{CHECK_UID, group_version};

/// Where a kind keeps the pod template its controller makes pods from.
pub fn template_path(api_version: &str, kind: &str) -> Option<&'static str> {
    match (group_version(api_version).0, kind) {
        ("apps" | "extensions", "Deployment" | "StatefulSet" | "ReplicaSet" | "DaemonSet")
        | ("", "ReplicationController")
        | ("batch", "Job") => Some("/spec/template"),
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// The controller that owns the pods: a Deployment's pods belong to a ReplicaSet and a
/// CronJob's to a Job; the others own their pods themselves.
fn pod_owner<'a>(api_version: &'a str, kind: &'a str) -> (&'a str, &'a str) {
    match kind {
        "Deployment" => ("apps/v1", "ReplicaSet"),
        "CronJob" => ("batch/v1", "Job"),
        _ => (api_version, kind),
    }
}

/// The Pod a controller would create from `obj`'s template, as the apiserver would send it to
/// `/mutate`: the template's metadata and spec, a generated name, the namespace and a
/// controller owner reference (so it is never taken for a bare pod).
pub fn template_pod(obj: &Object, path: &str, namespace: &str) -> Option<Value> {
    let template = obj.value.pointer(path)?;
    let spec = template.get("spec")?.clone();
    let mut metadata = template
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let name = obj
        .metadata
        .name
        .clone()
        .or_else(|| obj.metadata.generate_name.clone())
        .unwrap_or_default();
    let (owner_api_version, owner_kind) = pod_owner(&obj.api_version, &obj.kind);
    metadata.remove("name");
    metadata.insert(
        "generateName".to_owned(),
        json!(format!("{}-", name.trim_end_matches('-'))),
    );
    metadata.insert("namespace".to_owned(), json!(namespace));
    metadata.insert(
        "ownerReferences".to_owned(),
        json!([{
            "apiVersion": owner_api_version,
            "kind": owner_kind,
            "name": name,
            "uid": CHECK_UID,
            "controller": true,
            "blockOwnerDeletion": true,
        }]),
    );
    Some(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": spec,
    }))
}

/// Moves a patch computed for a Pod onto the pod template at `base` (`/spec/template`):
/// `/spec/...` becomes `/spec/template/spec/...`. When it touches metadata the template lacks,
/// the metadata mapping is created first.
pub fn rebase_patch(patch: Patch, base: &str, template: &Value) -> Result<Patch, String> {
    let base = PointerBuf::parse(base).map_err(|e| format!("bad pointer {base:?}: {e}"))?;
    let metadata = Pointer::from_static("/metadata");
    let move_ptr = |p: &mut PointerBuf| *p = base.concat(p);
    let mut ops = Vec::with_capacity(patch.0.len() + 1);
    if template.get("metadata").is_none()
        && patch.0.iter().any(|op| op.path().starts_with(metadata))
    {
        ops.push(PatchOperation::Add(AddOperation {
            path: base.concat(metadata),
            value: json!({}),
        }));
    }
    for mut op in patch.0 {
        match &mut op {
            PatchOperation::Add(o) => move_ptr(&mut o.path),
            PatchOperation::Remove(o) => move_ptr(&mut o.path),
            PatchOperation::Replace(o) => move_ptr(&mut o.path),
            PatchOperation::Test(o) => move_ptr(&mut o.path),
            PatchOperation::Move(o) => {
                move_ptr(&mut o.path);
                move_ptr(&mut o.from);
            }
            PatchOperation::Copy(o) => {
                move_ptr(&mut o.path);
                move_ptr(&mut o.from);
            }
        }
        ops.push(op);
    }
    Ok(Patch(ops))
}
