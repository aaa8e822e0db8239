//! What a list lookup decodes of each item: only the fields the rules read. A Service of the
//! API is ~800 bytes of JSON and a pod several kilobytes (managed fields, volumes, status); serde
//! skips every other field without allocating it, so a page costs its own bytes and little more.
//!
//! The rules read a Service's name, selector, type, clusterIP and session affinity (with its
//! timeout), and a pod's name, labels, Earthly role annotations, deletion, owners, phase, its
//! containers' name, image and environment (what detection reads) and mounts, and the Secrets
//! its volumes come from (where a buildkitd's TLS certificates come from). The slim items are turned
//! back into the `k8s_openapi` types the rules take, with every other field empty.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, Pod, PodSpec, PodStatus, ProjectedVolumeSource, SecretProjection,
    SecretVolumeSource, Service, ServiceSpec, SessionAffinityConfig, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::Deserialize;

use crate::detect::ROLE_ANNOTATION;

/// One page of a list answer.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    #[serde(default)]
    pub metadata: PageMeta,
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
}

/// Where the next page starts, when there is one.
#[derive(Debug, Default, Deserialize)]
pub struct PageMeta {
    #[serde(default, rename = "continue")]
    pub continue_: Option<String>,
}

impl<T> Page<T> {
    /// The token for the next page; `None` on the last one (the API sends `""` there).
    pub fn next(&self) -> Option<&str> {
        self.metadata.continue_.as_deref().filter(|t| !t.is_empty())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    deletion_timestamp: Option<Time>,
    #[serde(default)]
    owner_references: Option<Vec<OwnerReference>>,
}

/// A Service as the rules read it, its strings borrowed from the page: most Services of a
/// page are dropped unconverted (they are not in front of the pod), so they cost no allocation
/// but their selector's.
#[derive(Debug, Deserialize)]
pub struct SlimService<'a> {
    #[serde(default, borrow)]
    metadata: ServiceMeta<'a>,
    #[serde(default, borrow)]
    spec: SlimServiceSpec<'a>,
}

/// A string borrowed from the page when it holds no escapes (serde's own `Cow<str>` always
/// copies, and `&str` fails on an escaped string).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[derive(Debug, Default, Deserialize)]
struct ServiceMeta<'a> {
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    namespace: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimServiceSpec<'a> {
    // A list of pairs, not a map: no allocation per key, and selectors hold one to three.
    #[serde(borrow, default, deserialize_with = "pairs")]
    selector: Option<Vec<(Str<'a>, Str<'a>)>>,
    #[serde(rename = "type", borrow)]
    type_: Option<Str<'a>>,
    #[serde(rename = "clusterIP", borrow)]
    cluster_ip: Option<Str<'a>>,
    #[serde(borrow)]
    session_affinity: Option<Str<'a>>,
    session_affinity_config: Option<SessionAffinityConfig>,
}

/// A JSON object of strings as its pairs, in document order.
fn pairs<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<(Str<'a>, Str<'a>)>>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<Vec<(Str<'de>, Str<'de>)>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of strings")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(pair) = m.next_entry()? {
                out.push(pair);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_any(Visitor)
}

impl SlimService<'_> {
    /// [`super::service_selects`], before conversion.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.spec.type_.as_ref().map(|t| t.0.as_ref()) != Some("ExternalName")
            && self.spec.selector.as_ref().is_some_and(|s| {
                !s.is_empty()
                    && s.iter()
                        .all(|(k, v)| labels.get(k.0.as_ref()).map(String::as_str) == Some(&v.0))
            })
    }
}

fn owned(s: Option<Str<'_>>) -> Option<String> {
    s.map(|s| s.0.into_owned())
}

impl From<SlimService<'_>> for Service {
    fn from(s: SlimService<'_>) -> Self {
        let selector = s.spec.selector.map(|m| {
            m.into_iter()
                .map(|(k, v)| (k.0.into_owned(), v.0.into_owned()))
                .collect()
        });
        Service {
            metadata: ObjectMeta {
                name: owned(s.metadata.name),
                namespace: owned(s.metadata.namespace),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector,
                type_: owned(s.spec.type_),
                cluster_ip: owned(s.spec.cluster_ip),
                session_affinity: owned(s.spec.session_affinity),
                session_affinity_config: s.spec.session_affinity_config,
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }
}

/// A pod as the rules read it.
#[derive(Debug, Deserialize)]
pub struct SlimPod {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: SlimPodSpec,
    #[serde(default)]
    status: SlimPodStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimPodSpec {
    #[serde(default)]
    containers: Vec<SlimContainer>,
    #[serde(default)]
    init_containers: Option<Vec<SlimContainer>>,
    #[serde(default)]
    volumes: Option<Vec<SlimVolume>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimContainer {
    #[serde(default)]
    name: String,
    image: Option<String>,
    #[serde(default)]
    env: Option<Vec<EnvVar>>,
    #[serde(default)]
    volume_mounts: Option<Vec<SlimMount>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimMount {
    name: String,
    mount_path: String,
    sub_path: Option<String>,
}

/// A volume: its name and, for a Secret or projected volume, the Secrets it holds.
#[derive(Debug, Deserialize)]
struct SlimVolume {
    name: String,
    secret: Option<SlimSecret>,
    projected: Option<SlimProjected>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimSecret {
    secret_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SlimProjected {
    #[serde(default)]
    sources: Vec<SlimProjection>,
}

#[derive(Debug, Deserialize)]
struct SlimProjection {
    secret: Option<SlimSecretRef>,
}

#[derive(Debug, Deserialize)]
struct SlimSecretRef {
    #[serde(default)]
    name: String,
}

impl From<SlimVolume> for Volume {
    fn from(v: SlimVolume) -> Self {
        let sources = v.projected.map(|p| ProjectedVolumeSource {
            sources: Some(
                p.sources
                    .into_iter()
                    .map(|s| VolumeProjection {
                        secret: s.secret.map(|s| SecretProjection {
                            name: s.name,
                            ..SecretProjection::default()
                        }),
                        ..VolumeProjection::default()
                    })
                    .collect(),
            ),
            ..ProjectedVolumeSource::default()
        });
        Volume {
            name: v.name,
            secret: v.secret.map(|s| SecretVolumeSource {
                secret_name: s.secret_name,
                ..SecretVolumeSource::default()
            }),
            projected: sources,
            ..Volume::default()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct SlimPodStatus {
    phase: Option<String>,
}

impl From<SlimContainer> for Container {
    fn from(c: SlimContainer) -> Self {
        Container {
            name: c.name,
            image: c.image,
            env: c.env,
            volume_mounts: c.volume_mounts.map(|ms| {
                ms.into_iter()
                    .map(|m| VolumeMount {
                        name: m.name,
                        mount_path: m.mount_path,
                        sub_path: m.sub_path,
                        ..VolumeMount::default()
                    })
                    .collect()
            }),
            ..Container::default()
        }
    }
}

impl From<SlimPod> for Pod {
    fn from(p: SlimPod) -> Self {
        let convert = |cs: Vec<SlimContainer>| cs.into_iter().map(Container::from).collect();
        // Only the role annotations matter to detection; others (last-applied-configuration
        // can be the size of the pod) are dropped.
        let annotations = p.metadata.annotations.map(|mut a| {
            a.retain(|k, _| k.starts_with(ROLE_ANNOTATION));
            a
        });
        Pod {
            metadata: ObjectMeta {
                name: p.metadata.name,
                namespace: p.metadata.namespace,
                labels: p.metadata.labels,
                annotations,
                deletion_timestamp: p.metadata.deletion_timestamp,
                owner_references: p.metadata.owner_references,
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: convert(p.spec.containers),
                init_containers: p.spec.init_containers.map(convert),
                volumes: p
                    .spec
                    .volumes
                    .map(|vs| vs.into_iter().map(Volume::from).collect()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: p.status.phase,
                ..PodStatus::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_keeps_what_stickiness_reads() {
        let text = json!({
            "metadata": {"resourceVersion": "7", "continue": "abc"},
            "items": [{"metadata": {"name": "bk", "namespace": "ci", "uid": "u",
                "managedFields": [{"manager": "kubectl"}]},
                "spec": {"selector": {"app": "bk"}, "type": "ClusterIP", "clusterIP": "None",
                    "sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
                    "ports": [{"port": 1234}]}}]
        })
        .to_string();
        let page: Page<SlimService> = serde_json::from_str(&text).expect("page");
        assert_eq!(page.next(), Some("abc"));
        let item = page.items.into_iter().next().expect("one");
        let labels = |app: &str| BTreeMap::from([("app".to_owned(), app.to_owned())]);
        assert!(item.selects(&labels("bk")));
        assert!(!item.selects(&labels("web")));
        let s = Service::from(item);
        assert_eq!(s.metadata.name.as_deref(), Some("bk"));
        assert_eq!(s.metadata.uid, None);
        let spec = s.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.session_affinity.as_deref(), Some("ClientIP"));
        assert_eq!(
            spec.session_affinity_config
                .and_then(|c| c.client_ip)
                .and_then(|c| c.timeout_seconds),
            Some(600)
        );
        assert_eq!(spec.ports, None);
    }

    #[test]
    fn pod_keeps_what_detection_and_liveness_read() {
        let p: SlimPod = serde_json::from_value(json!({
            "metadata": {"name": "bk-0", "namespace": "ci", "labels": {"app": "bk"},
                "deletionTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {"earthly.dev/role": "buildkitd",
                    "kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "u"}]},
            "spec": {"containers": [{"name": "b", "image": "earthly/buildkitd",
                "env": [{"name": "BUILDKIT_HOST", "value": "tcp://x:1"}],
                "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
                "volumes": [{"name": "v", "emptyDir": {}}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1"}
        }))
        .expect("pod");
        let pod = Pod::from(p);
        let meta = &pod.metadata;
        assert_eq!(
            meta.labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str),
            Some("bk")
        );
        assert_eq!(
            meta.annotations
                .as_ref()
                .map(|a| a.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["earthly.dev/role".to_owned()])
        );
        assert!(meta.deletion_timestamp.is_some());
        assert_eq!(meta.owner_references.as_ref().map(Vec::len), Some(1));
        let spec = pod.spec.expect("spec");
        assert_eq!(
            spec.containers[0].image.as_deref(),
            Some("earthly/buildkitd")
        );
        assert_eq!(spec.containers[0].env.as_ref().map(Vec::len), Some(1));
        let mounts = spec.containers[0].volume_mounts.as_ref().expect("mounts");
        assert_eq!(
            (mounts[0].name.as_str(), mounts[0].mount_path.as_str()),
            ("v", "/v")
        );
        assert_eq!(mounts[0].read_only, None, "not read");
        let volumes = spec.volumes.expect("volumes");
        assert_eq!(volumes[0].name, "v");
        assert_eq!(volumes[0].empty_dir, None, "only Secret sources are kept");
        assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    }

    #[test]
    fn pod_keeps_the_secrets_its_volumes_come_from() {
        let p: SlimPod = serde_json::from_value(json!({
            "metadata": {"name": "bk-0"},
            "spec": {"containers": [{"name": "b", "image": "earthly/buildkitd",
                "volumeMounts": [{"name": "tls", "mountPath": "/etc/ca.pem", "subPath": "ca.pem"}]}],
                "volumes": [
                    {"name": "tls", "secret": {"secretName": "bk-tls", "defaultMode": 420}},
                    {"name": "p", "projected": {"sources": [
                        {"configMap": {"name": "c"}}, {"secret": {"name": "bk-tls-2"}}]}}]}
        }))
        .expect("pod");
        let spec = Pod::from(p).spec.expect("spec");
        let m = &spec.containers[0].volume_mounts.as_ref().expect("mounts")[0];
        assert_eq!(m.sub_path.as_deref(), Some("ca.pem"));
        let volumes = spec.volumes.expect("volumes");
        let secret = volumes[0].secret.as_ref().expect("secret");
        assert_eq!(secret.secret_name.as_deref(), Some("bk-tls"));
        assert_eq!(secret.default_mode, None);
        let sources = volumes[1]
            .projected
            .as_ref()
            .and_then(|p| p.sources.as_ref())
            .expect("sources");
        assert!(sources[0].secret.is_none() && sources[0].config_map.is_none());
        assert_eq!(
            sources[1].secret.as_ref().map(|s| s.name.as_str()),
            Some("bk-tls-2")
        );
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let plain: Str = serde_json::from_str(r#""bk""#).expect("plain");
        assert!(matches!(plain.0, Cow::Borrowed("bk")));
        let escaped: Str = serde_json::from_str(r#""b\u006b""#).expect("escaped");
        assert_eq!(escaped.0, "bk");
    }

    #[test]
    fn last_page_has_no_next() {
        let page: Page<SlimPod> =
            serde_json::from_value(json!({"metadata": {"continue": ""}, "items": []}))
                .expect("page");
        assert_eq!(page.next(), None);
    }
}
