//! Builds the AdmissionRequest the kube-apiserver would send for an object, so `check` asks
//! [`crate::review::review`] exactly what the server is asked.

use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};
use serde_json::Value;

use crate::cluster::ClusterView;
use crate::review::{self, ADMISSION_API_VERSION, Policy, Reviewed, Route};

/// The uid of every offline request: nothing answers it but `check` itself.
pub const CHECK_UID: &str = "earthly-webhook-check";
/// Who `check` says is asking.
pub const CHECK_USER: &str = "earthly-webhook-check";

/// Kinds that live outside namespaces; everything else is namespaced, as custom resources
/// usually are. (A cluster-scoped object sent with a namespace would be refused by the
/// apiserver, so the list only needs the kinds people put next to their workloads.)
const CLUSTER_SCOPED: &[&str] = &[
    "APIService",
    "CertificateSigningRequest",
    "ClusterIssuer",
    "ClusterRole",
    "ClusterRoleBinding",
    "CSIDriver",
    "CSINode",
    "CustomResourceDefinition",
    "FlowSchema",
    "IngressClass",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PriorityClass",
    "PriorityLevelConfiguration",
    "RuntimeClass",
    "StorageClass",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
];

/// Whether objects of `kind` live in a namespace.
pub fn is_namespaced(kind: &str) -> bool {
    !CLUSTER_SCOPED.contains(&kind)
}

/// The resource (plural, lowercase) of a kind, the way the apiserver's REST mapper guesses it
/// for kinds it has no explicit plural for (`UnsafeGuessKindToResource`): `Ingress` ->
/// `ingresses`, `NetworkPolicy` -> `networkpolicies`, `Deployment` -> `deployments`.
pub fn resource_of(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower == "endpoints" {
        return lower;
    }
    if lower.ends_with('s') {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// `apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`).
pub fn group_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// A subresource write such as `kubectl scale`, where the object is not the resource itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subresource {
    /// The resource written to, e.g. `apps/v1 deployments`.
    pub resource: GroupVersionResource,
    /// The subresource, e.g. `scale`.
    pub name: String,
}

/// An object as a client would send it to the apiserver.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    /// The object, as JSON.
    pub object: &'a Value,
    /// Its namespace (the object's own, else the one the client would use); `None` for
    /// cluster-scoped kinds.
    pub namespace: Option<&'a str>,
    pub operation: Operation,
    /// The stored object an UPDATE replaces.
    pub old_object: Option<&'a Value>,
    pub subresource: Option<Subresource>,
}

impl<'a> Submission<'a> {
    /// A CREATE of `object` in `namespace`.
    pub fn create(object: &'a Value, namespace: Option<&'a str>) -> Self {
        Self {
            object,
            namespace,
            operation: Operation::Create,
            old_object: None,
            subresource: None,
        }
    }
}

/// An object that cannot be put into an AdmissionRequest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("{what}: {field} is missing or not a string")]
    Missing { what: String, field: &'static str },
    #[error("cannot read {what}: {message}")]
    Unreadable { what: String, message: String },
}

fn decode_object(
    value: &Value,
    namespace: Option<&str>,
    what: &str,
) -> Result<DynamicObject, RequestError> {
    let mut object: DynamicObject =
        serde_path_to_error::deserialize(value).map_err(|e| RequestError::Unreadable {
            what: what.to_owned(),
            message: format!("{}: {}", e.path(), e.inner()),
        })?;
    // The apiserver sets the namespace of the request URL on the object before admission.
    if let Some(ns) = namespace {
        object.metadata.namespace = Some(ns.to_owned());
    }
    Ok(object)
}

/// The request the apiserver would send for `submission`.
pub fn admission_request(
    submission: &Submission<'_>,
) -> Result<AdmissionRequest<DynamicObject>, RequestError> {
    let obj = submission.object;
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let what = if kind.is_empty() { "object" } else { kind };
    let field = |name: &'static str| {
        obj.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| RequestError::Missing {
                what: what.to_owned(),
                field: name,
            })
    };
    let api_version = field("apiVersion")?;
    let kind = field("kind")?;
    let (group, version) = group_version(api_version);
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, sub_resource) = match &submission.subresource {
        Some(s) => (s.resource.clone(), Some(s.name.clone())),
        None => (
            GroupVersionResource::gvr(group, version, &resource_of(kind)),
            None,
        ),
    };
    let object = decode_object(obj, submission.namespace, what)?;
    let old_object = submission
        .old_object
        .map(|old| decode_object(old, submission.namespace, what))
        .transpose()?;
    Ok(AdmissionRequest {
        types: TypeMeta {
            api_version: ADMISSION_API_VERSION.to_owned(),
            kind: "AdmissionReview".to_owned(),
        },
        uid: CHECK_UID.to_owned(),
        request_kind: Some(gvk.clone()),
        kind: gvk,
        request_resource: Some(resource.clone()),
        resource,
        request_sub_resource: sub_resource.clone(),
        sub_resource,
        name: object.metadata.name.clone().unwrap_or_default(),
        namespace: submission.namespace.map(str::to_owned),
        operation: submission.operation.clone(),
        user_info: UserInfo {
            username: Some(CHECK_USER.to_owned()),
            ..Default::default()
        },
        object: (submission.operation != Operation::Delete).then_some(object),
        old_object,
        dry_run: false,
        options: None,
    })
}

/// Reviews one object with the same function the HTTPS server calls, and gives back the same
/// [`Reviewed`] (its [`Reviewed::response`] is the server's AdmissionResponse).
pub async fn review_object(
    policy: &Policy,
    cluster: &dyn ClusterView,
    route: Route,
    submission: &Submission<'_>,
) -> Result<Reviewed, RequestError> {
    let request = admission_request(submission)?;
    Ok(review::review(policy, cluster, route, &request).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn guesses_resources_like_the_apiserver() {
        for (kind, resource) in [
            ("Pod", "pods"),
            ("Deployment", "deployments"),
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("HorizontalPodAutoscaler", "horizontalpodautoscalers"),
            ("Endpoints", "endpoints"),
            ("Service", "services"),
        ] {
            assert_eq!(resource_of(kind), resource);
        }
    }

    #[test]
    fn builds_a_create_request_with_the_namespace_set() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}});
        let r = admission_request(&Submission::create(&pod, Some("ci"))).expect("request");
        assert_eq!(r.kind, GroupVersionKind::gvk("", "v1", "Pod"));
        assert_eq!(r.resource, GroupVersionResource::gvr("", "v1", "pods"));
        assert_eq!(r.namespace.as_deref(), Some("ci"));
        assert_eq!(r.name, "p");
        assert_eq!(r.operation, Operation::Create);
        let object = r.object.expect("object");
        assert_eq!(object.metadata.namespace.as_deref(), Some("ci"));
        assert_eq!(object.data["spec"], json!({"containers": []}));
    }

    #[test]
    fn cluster_scoped_objects_have_no_namespace() {
        assert!(!is_namespaced("Namespace"));
        assert!(is_namespaced("Deployment"));
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ci"}});
        let r = admission_request(&Submission::create(&ns, None)).expect("request");
        assert_eq!(r.namespace, None);
    }

    #[test]
    fn subresource_writes_name_the_parent_resource() {
        let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "bk"}, "spec": {"replicas": 2}});
        let r = admission_request(&Submission {
            operation: Operation::Update,
            old_object: Some(&scale),
            subresource: Some(Subresource {
                resource: GroupVersionResource::gvr("apps", "v1", "deployments"),
                name: "scale".to_owned(),
            }),
            ..Submission::create(&scale, Some("ci"))
        })
        .expect("request");
        assert_eq!(r.kind, GroupVersionKind::gvk("autoscaling", "v1", "Scale"));
        assert_eq!(r.resource.resource, "deployments");
        assert_eq!(r.sub_resource.as_deref(), Some("scale"));
        assert!(r.old_object.is_some());
    }

    #[test]
    fn unreadable_metadata_is_an_error() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 3}});
        let e = admission_request(&Submission::create(&pod, Some("ci"))).expect_err("bad");
        assert_eq!(
            e.to_string(),
            "cannot read Pod: metadata.name: invalid type: integer `3`, expected a string"
        );
    }
}
