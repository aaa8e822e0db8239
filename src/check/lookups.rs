//! The cluster as the input describes it, for the rules that look things up.

use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::{Value, json};

use super::input::Object;
use super::request::group_version;
use super::template::{template_path, template_pod};
use crate::cluster::{MemoryCluster, Workload, WorkloadKind};

/// A workload as the lookups see it, when `obj` is one and reads as one.
pub(crate) fn workload_of(obj: &Object, namespace: &str) -> Option<Workload> {
    if !matches!(group_version(&obj.api_version).0, "apps" | "extensions") {
        return None;
    }
    let kind = WorkloadKind::parse(&obj.kind)?;
    let spec = obj.value.get("spec")?;
    let template = serde_json::from_value(spec.get("template")?.clone()).ok()?;
    let selector = spec
        .get("selector")
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let replicas = match kind {
        WorkloadKind::DaemonSet => None,
        _ => spec
            .get("replicas")
            .and_then(Value::as_i64)
            .and_then(|r| i32::try_from(r).ok()),
    };
    Some(Workload {
        kind,
        namespace: namespace.to_owned(),
        name: obj.metadata.name.clone().unwrap_or_default(),
        replicas,
        selector,
        template,
    })
}

/// The Pod a workload's controller would create from its template.
fn template_pod_of(obj: &Object, namespace: &str) -> Option<Pod> {
    let path = template_path(&obj.api_version, &obj.kind)?;
    serde_json::from_value(template_pod(obj, path, namespace)?).ok()
}

/// What the Deployment controller does to the pods of its ReplicaSet: the `pod-template-hash`
/// label, and the ReplicaSet named `<deployment>-<hash>`. The fleet rules tell a Deployment's
/// pods from another workload's by it, so the pod made here and the pods of the Deployment's
/// real ReplicaSets in the same input (a `kubectl get -o yaml` dump) are one instance.
fn as_replica_set_pod(pod: &mut Pod) {
    const HASH: &str = "check";
    let Some(owner) = pod.metadata.owner_references.iter_mut().flatten().next() else {
        return;
    };
    owner.name = format!("{}-{HASH}", owner.name);
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("pod-template-hash".to_owned(), HASH.to_owned());
}

/// The cluster as the input describes it. Namespaces, workloads and Services are known from the
/// whole input, whatever their order; pods appear in input order, as `kubectl apply` creates
/// them: the Pods of the input, and one pod for each long-running workload that runs any. A
/// pod under review is therefore never counted as already there. Partial: a lookup of anything
/// else answers "unknown".
pub struct InputCluster {
    view: MemoryCluster,
    /// The pods the objects make, with the index of the object, in input order.
    pods: Vec<(usize, Pod)>,
    /// How many of `pods` are in `view` so far.
    added: usize,
}

impl InputCluster {
    pub fn new(objects: &[(Object, Option<String>)]) -> Self {
        let mut base = MemoryCluster {
            partial: true,
            ..MemoryCluster::default()
        };
        let mut pods = Vec::new();
        for (index, (obj, namespace)) in objects.iter().enumerate() {
            let Some(ns) = namespace else {
                if obj.kind == "Namespace" && obj.api_version == "v1" {
                    base.namespaces.insert(
                        obj.metadata.name.clone().unwrap_or_default(),
                        obj.metadata.labels.clone().unwrap_or_default(),
                    );
                }
                continue;
            };
            let with_namespace = |mut v: Value| {
                if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("namespace".to_owned(), json!(ns));
                }
                v
            };
            match (obj.api_version.as_str(), obj.kind.as_str()) {
                ("v1", "Service") => {
                    if let Ok(s) =
                        serde_json::from_value::<Service>(with_namespace(obj.value.clone()))
                    {
                        base.services.push(s);
                    }
                }
                ("v1", "Pod") => {
                    if let Ok(p) = serde_json::from_value::<Pod>(with_namespace(obj.value.clone()))
                    {
                        pods.push((index, p));
                    }
                }
                _ => {}
            }
            if let Some(w) = workload_of(obj, ns) {
                let runs = w.replicas.is_none_or(|r| r > 0);
                if runs && let Some(mut pod) = template_pod_of(obj, ns) {
                    if w.kind == WorkloadKind::Deployment {
                        as_replica_set_pod(&mut pod);
                    }
                    pods.push((index, pod));
                }
                base.workloads.push(w);
            }
        }
        Self {
            view: base,
            pods,
            added: 0,
        }
    }

    /// A cluster known whole (`audit` read every object of the namespace): every lookup is
    /// answered from `view` as it is, with nothing appearing in input order, and a miss means
    /// the object does not exist.
    pub fn existing(view: MemoryCluster) -> Self {
        Self {
            view,
            pods: Vec::new(),
            added: 0,
        }
    }

    /// The cluster as object `index` finds it: the pods of the objects before it are there.
    pub fn before(&mut self, index: usize) -> &MemoryCluster {
        while let Some((i, pod)) = self.pods.get(self.added)
            && *i < index
        {
            self.view.pods.push(pod.clone());
            self.added += 1;
        }
        &self.view
    }
}
