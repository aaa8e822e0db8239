//! What the apiserver does to an object before judging it, done here so `check` judges the
//! same object: it must decode as its kind (else the apiserver answers 400 and no webhook is
//! asked), and the fields only the server sets are cleared on CREATE.

use serde::de::DeserializeOwned;
use serde_json::Value;

use k8s_openapi::api::{apps, autoscaling, batch, core, networking, policy};

/// Decodes `value` as `T`, naming the first field that does not fit.
fn decode<T: DeserializeOwned>(value: &Value) -> Result<(), String> {
    serde_path_to_error::deserialize::<_, T>(value)
        .map(drop)
        .map_err(|e| match e.path().to_string().as_str() {
            "." => e.inner().to_string(),
            path => format!("{path}: {}", e.inner()),
        })
}

/// Checks that an object reads as its kind, for the kinds the policy looks into and the ones
/// met beside them in Earthly manifests; other kinds are passed as they are, like the
/// apiserver passes custom resources it has no schema for. The error names the field.
pub fn read_as_kind(api_version: &str, kind: &str, value: &Value) -> Result<(), String> {
    match (api_version, kind) {
        ("v1", "Pod") => decode::<core::v1::Pod>(value),
        ("v1", "PodTemplate") => decode::<core::v1::PodTemplate>(value),
        ("v1", "ReplicationController") => decode::<core::v1::ReplicationController>(value),
        ("v1", "Service") => decode::<core::v1::Service>(value),
        ("v1", "ConfigMap") => decode::<core::v1::ConfigMap>(value),
        ("v1", "Secret") => decode::<core::v1::Secret>(value),
        ("v1", "ServiceAccount") => decode::<core::v1::ServiceAccount>(value),
        ("v1", "Namespace") => decode::<core::v1::Namespace>(value),
        ("v1", "PersistentVolumeClaim") => decode::<core::v1::PersistentVolumeClaim>(value),
        ("apps/v1", "Deployment") => decode::<apps::v1::Deployment>(value),
        ("apps/v1", "StatefulSet") => decode::<apps::v1::StatefulSet>(value),
        ("apps/v1", "DaemonSet") => decode::<apps::v1::DaemonSet>(value),
        ("apps/v1", "ReplicaSet") => decode::<apps::v1::ReplicaSet>(value),
        ("batch/v1", "Job") => decode::<batch::v1::Job>(value),
        ("batch/v1", "CronJob") => decode::<batch::v1::CronJob>(value),
        ("autoscaling/v1", "HorizontalPodAutoscaler") => {
            decode::<autoscaling::v1::HorizontalPodAutoscaler>(value)
        }
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            decode::<autoscaling::v2::HorizontalPodAutoscaler>(value)
        }
        ("policy/v1", "PodDisruptionBudget") => decode::<policy::v1::PodDisruptionBudget>(value),
        ("networking.k8s.io/v1", "NetworkPolicy") => decode::<networking::v1::NetworkPolicy>(value),
        _ => Ok(()),
    }
}

/// Metadata fields the apiserver sets itself on CREATE, whatever the request says
/// (`rest.BeforeCreate` and `FillObjectMetaSystemFields`): a `kubectl get -o yaml` dump sent
/// back is a new object, not one being deleted.
const SERVER_SET_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Clears what the apiserver sets on CREATE: the server-set metadata and `status` (every
/// built-in kind's create strategy resets it).
pub fn clear_server_fields(value: &mut Value) {
    let Some(map) = value.as_object_mut() else {
        return;
    };
    map.shift_remove("status");
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        for field in SERVER_SET_METADATA {
            meta.shift_remove(*field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_field_that_does_not_fit_the_kind() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": true}]}]}});
        assert_eq!(
            read_as_kind("v1", "Pod", &pod),
            Err(
                "spec.containers[0].env[0].value: invalid type: boolean `true`, expected a string"
                    .to_owned()
            )
        );
    }

    #[test]
    fn unknown_kinds_pass() {
        assert_eq!(
            read_as_kind("example.com/v1", "Widget", &json!({"spec": 1})),
            Ok(())
        );
    }

    #[test]
    fn quantities_may_be_numbers() {
        let pod =
            json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1}}}]}});
        assert_eq!(read_as_kind("v1", "Pod", &pod), Ok(()));
    }

    #[test]
    fn clears_server_set_fields_only() {
        let mut v = json!({"metadata": {"name": "a", "uid": "u", "resourceVersion": "1",
            "deletionTimestamp": "2026-01-01T00:00:00Z", "labels": {"a": "b"}}, "status": {"phase": "Running"}, "spec": {}});
        clear_server_fields(&mut v);
        assert_eq!(
            v,
            json!({"metadata": {"name": "a", "labels": {"a": "b"}}, "spec": {}})
        );
    }
}
