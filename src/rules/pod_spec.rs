//! A pod spec as the rules read it. Detection, mutation and validation look at eighteen fields of
//! a pod spec; k8s-openapi's `PodSpec` decodes all of them, and every probe, resource list and
//! volume source inside, into kilobytes of structs no rule reads. Decoding was most of a
//! review's CPU (docs/benchmarks.md): a projected service-account volume alone cost more than
//! detection, mutation and validation together.
//!
//! So a pod's spec is decoded into [`RuleSpec`], which keeps the fields below and skips the rest
//! unparsed, then handed to the rules as a `PodSpec` with only those fields set. Both ways into a
//! pod review (the fast path and the general one) decode through here, so they read the same
//! fields and report the same errors. A field not listed here reads as absent: a rule that starts
//! reading one must add it here (the tests below check the rules answer alike on a spec decoded
//! either way).
//!
//! Unlisted fields are not checked for type either. The apiserver has validated the pod
//! against its schema before any webhook sees it, so this matters only to `check` on
//! hand-written manifests, where kubectl reports such errors anyway.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvFromSource, EnvVar, PodOS, PodSecurityContext, PodSpec,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use serde::Deserialize;

/// The fields of a pod spec the rules read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleSpec {
    // k8s-openapi reads a missing or null `containers` (and name below) as empty; so does this.
    containers: Option<Vec<RuleContainer>>,
    init_containers: Option<Vec<RuleContainer>>,
    volumes: Option<Vec<VolumeName>>,
    tolerations: Option<Vec<Toleration>>,
    node_selector: Option<BTreeMap<String, String>>,
    affinity: Option<Affinity>,
    // Settings that keep a privileged Earthly container from running (`runAsNonRoot`,
    // `hostUsers: false`, a Windows pod).
    security_context: Option<PodSecurityContext>,
    host_users: Option<bool>,
    os: Option<PodOS>,
}

/// The fields of a container the rules read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleContainer {
    name: Option<String>,
    image: Option<String>,
    env: Option<Vec<EnvVar>>,
    security_context: Option<SecurityContext>,
    volume_mounts: Option<Vec<VolumeMount>>,
    // Detection: a `command` may replace the image's entrypoint, `envFrom` may set the
    // variables it tests, and `restartPolicy: Always` makes an init container a sidecar.
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
    env_from: Option<Vec<EnvFromSource>>,
    restart_policy: Option<String>,
}

/// Of a volume, the rules read only its name (to pick one for the scratch volume that is not
/// taken); its source is never looked at.
#[derive(Deserialize)]
struct VolumeName {
    name: Option<String>,
}

impl From<RuleContainer> for Container {
    fn from(c: RuleContainer) -> Self {
        Container {
            name: c.name.unwrap_or_default(),
            image: c.image,
            env: c.env,
            security_context: c.security_context,
            volume_mounts: c.volume_mounts,
            command: c.command,
            args: c.args,
            env_from: c.env_from,
            restart_policy: c.restart_policy,
            ..Container::default()
        }
    }
}

impl From<RuleSpec> for PodSpec {
    fn from(s: RuleSpec) -> Self {
        let containers = |list: Vec<RuleContainer>| list.into_iter().map(Container::from).collect();
        PodSpec {
            containers: containers(s.containers.unwrap_or_default()),
            init_containers: s.init_containers.map(containers),
            volumes: s.volumes.map(|v| {
                v.into_iter()
                    .map(|v| Volume {
                        name: v.name.unwrap_or_default(),
                        ..Volume::default()
                    })
                    .collect()
            }),
            tolerations: s.tolerations,
            node_selector: s.node_selector,
            affinity: s.affinity,
            security_context: s.security_context,
            host_users: s.host_users,
            os: s.os,
            ..PodSpec::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::config::Config;
    use crate::detect::Detector;

    /// A spec with every field the rules read, and around them fields they do not.
    fn full_spec() -> Value {
        json!({
            "containers": [{
                "name": "earthly", "image": "earthly/earthly:v0.8.15",
                "env": [{"name": "EARTHLY_TMP_DIR", "value": "/scratch"},
                        {"name": "FROM_REF", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                "securityContext": {"privileged": false, "allowPrivilegeEscalation": false},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "command": ["earthly"], "args": ["+build"],
                "envFrom": [{"prefix": "CI_", "configMapRef": {"name": "ci"}}],
                "resources": {"limits": {"cpu": "2"}},
                "livenessProbe": {"exec": {"command": ["true"]}},
                "ports": [{"containerPort": 8372}]
            }],
            "initContainers": [{"name": "init", "image": "earthly/buildkitd:v0.8.15", "restartPolicy": "Always"}],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "c"}},
                {"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
            ],
            "tolerations": [{"key": "earthly", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {"pool": "earthly"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["earthly"]}]}]}}},
            "serviceAccountName": "ci",
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 0, "runAsNonRoot": true},
            "hostUsers": false,
            "os": {"name": "linux"}
        })
    }

    fn through_rule_spec(spec: &Value) -> PodSpec {
        serde_json::from_value::<RuleSpec>(spec.clone())
            .expect("decodes")
            .into()
    }

    /// Every field a rule reads comes through exactly as k8s-openapi decodes it.
    #[test]
    fn read_fields_survive() {
        let spec = full_spec();
        let full: PodSpec = serde_json::from_value(spec.clone()).expect("a PodSpec");
        let slim = through_rule_spec(&spec);

        assert_eq!(slim.init_containers.as_ref().map(Vec::len), Some(1));
        for (s, f) in slim.containers.iter().zip(&full.containers) {
            assert_eq!(s.name, f.name);
            assert_eq!(s.image, f.image);
            assert_eq!(s.env, f.env);
            assert_eq!(s.security_context, f.security_context);
            assert_eq!(s.volume_mounts, f.volume_mounts);
            assert_eq!(s.command, f.command);
            assert_eq!(s.args, f.args);
            assert_eq!(s.env_from, f.env_from);
        }
        assert_eq!(
            slim.init_containers
                .as_ref()
                .map(|c| c[0].restart_policy.clone()),
            Some(Some("Always".to_owned()))
        );
        assert_eq!(slim.security_context, full.security_context);
        assert_eq!(slim.host_users, Some(false));
        assert_eq!(slim.os, full.os);
        let names = |s: &PodSpec| -> Vec<String> {
            s.volumes.iter().flatten().map(|v| v.name.clone()).collect()
        };
        assert_eq!(names(&slim), names(&full));
        assert_eq!(slim.tolerations, full.tolerations);
        assert_eq!(slim.node_selector, full.node_selector);
        assert_eq!(slim.affinity, full.affinity);

        // The rules give the same answer on both.
        let config = Config::default();
        let detector = Detector::new(&config.detection).expect("detector");
        let found = detector.classify(None, &full).expect("classified");
        assert_eq!(detector.classify(None, &slim).expect("classified"), found);
        let patch = |s: &PodSpec| {
            serde_json::to_value(crate::mutate::mutate(s, "/spec", &found, &config.mutation).patch)
                .expect("json")
        };
        assert_eq!(patch(&slim), patch(&full));
        let warnings =
            |s: &PodSpec| crate::mutate::mutate(s, "/spec", &found, &config.mutation).warnings;
        assert!(
            !warnings(&full).is_empty(),
            "runAsNonRoot and hostUsers warn"
        );
        assert_eq!(warnings(&slim), warnings(&full));
        let findings = |s: &PodSpec| crate::rules::footguns::check("Pod ci/p", "spec", s, &found);
        assert_eq!(findings(&slim), findings(&full));
    }

    /// Fields no rule reads are neither kept nor type-checked; fields a rule reads are.
    #[test]
    fn unread_fields_are_skipped_and_read_fields_checked() {
        let mut spec = full_spec();
        spec["containers"][0]["resources"] = json!("not an object");
        spec["volumes"][1]["projected"] = json!(42);
        let slim = through_rule_spec(&spec);
        assert_eq!(slim.containers[0].resources, None);
        assert_eq!(
            slim.volumes.as_ref().map(|v| v[1].projected.is_none()),
            Some(true)
        );

        spec["containers"][0]["env"] = json!("not a list");
        let error = serde_json::from_value::<RuleSpec>(spec)
            .err()
            .expect("env is read, so its type is checked");
        assert!(error.to_string().contains("invalid type"), "{error}");
    }

    /// Absent and null read as k8s-openapi reads them.
    #[test]
    fn absent_and_null_fields_read_as_k8s_openapi_reads_them() {
        for spec in [
            json!({}),
            json!({"containers": [{}]}),
            json!({"containers": null, "volumes": null, "initContainers": null}),
            json!({"containers": [{"name": "a", "env": null, "securityContext": null}], "volumes": [{}]}),
            json!({"containers": [{"name": null}], "volumes": [{"name": null}]}),
        ] {
            let full: PodSpec = serde_json::from_value(spec.clone()).expect("a PodSpec");
            assert_eq!(through_rule_spec(&spec), full, "{spec}");
        }
    }
}
