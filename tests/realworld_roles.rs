//! Every Earthly container in the real-world inputs (`tests/data/realworld/`: manifests from
//! public repositories and the Kubernetes API's fully populated round-trip objects) goes
//! through detection, and gets the role the image's entrypoint gives it.

use std::path::Path;

use earthly_webhook::config::Config;
use earthly_webhook::detect::{Detector, Role};
use earthly_webhook::mutate;
use earthly_webhook::rule_id::{RuleId, Warning};
use k8s_openapi::api::core::v1::PodSpec;
use serde::Deserialize;
use serde_json::Value;

const DATA: &str = "tests/data/realworld";

/// The pod template of an object (its metadata and spec), by kind; `None` for kinds without.
fn template(object: &Value) -> Option<&Value> {
    match object["kind"].as_str()? {
        "Pod" => Some(object),
        "PodTemplate" => Some(&object["template"]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            Some(&object["spec"]["template"])
        }
        "CronJob" => Some(&object["spec"]["jobTemplate"]["spec"]["template"]),
        _ => None,
    }
}

/// The documents of a file: one JSON object, or YAML with `---` separators. A document that
/// is not YAML at all is reported as such.
fn documents(path: &Path) -> Vec<Result<Value, String>> {
    let text = std::fs::read_to_string(path).expect("readable fixture");
    if path.extension().is_some_and(|e| e == "json") {
        return vec![serde_json::from_str(&text).map_err(|e| e.to_string())];
    }
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = serde_yaml_ng::Value::deserialize(doc)
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()));
        // After a syntax error the parser cannot find the next document.
        let stop = v.is_err();
        out.push(v);
        if stop {
            break;
        }
    }
    out
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::AllInOne => "all-in-one",
        Role::Buildkitd => "buildkitd",
        Role::Client => "client",
    }
}

/// One line per Earthly container: `file | Kind name | list[i] name | role family`, plus one
/// line per document detection cannot read.
fn survey() -> Vec<String> {
    let detector = Detector::new(&Config::default().detection).expect("detector");
    let mut files: Vec<_> = ["manifests", "k8s-api-testdata"]
        .iter()
        .flat_map(|d| std::fs::read_dir(Path::new(DATA).join(d)).expect("fixture dir"))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for path in files {
        let file = path.file_name().and_then(|f| f.to_str()).expect("name");
        for (i, doc) in documents(&path).into_iter().enumerate() {
            let object = match doc {
                Ok(o) => o,
                Err(_) => {
                    lines.push(format!("{file} | document {} | not YAML", i + 1));
                    break;
                }
            };
            let Some(t) = template(&object) else {
                continue;
            };
            let what = format!(
                "{} {}",
                object["kind"].as_str().unwrap_or_default(),
                object["metadata"]["name"].as_str().unwrap_or_default()
            );
            let spec: PodSpec = match serde_json::from_value(t["spec"].clone()) {
                Ok(s) => s,
                Err(_) => {
                    lines.push(format!("{file} | {what} | not a pod spec"));
                    continue;
                }
            };
            let annotations = serde_json::from_value(t["metadata"]["annotations"].clone())
                .ok()
                .flatten();
            let classified = detector
                .classify(annotations.as_ref(), &spec)
                .expect("valid annotations");
            for f in classified.iter() {
                lines.push(format!(
                    "{file} | {what} | {}[{}] {} | {} {:?}",
                    f.list.field(),
                    f.index,
                    f.name,
                    role_name(f.role),
                    f.family
                ));
            }
            // Whatever the role, the mutation's patch applies to the object's pod spec.
            let m = mutate::mutate(&spec, "/spec", &classified, &Config::default().mutation);
            let mut pod = serde_json::json!({"spec": t["spec"].clone()});
            json_patch::patch(&mut pod, &m.patch).expect("patch applies");
        }
    }
    lines
}

#[test]
fn every_earthly_container_gets_the_role_its_entrypoint_gives_it() {
    let expected: Vec<String> = EXPECTED.iter().map(|s| (*s).to_owned()).collect();
    let got = survey();
    assert!(
        got == expected,
        "roles differ; got:\n{}\n",
        got.iter()
            .map(|l| format!("    \"{l}\","))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Checked by hand against the entrypoint's rules: the k8s-api-testdata containers all have a
/// `command` ("commandValue") that replaces the entrypoint and no buildkit address, so the
/// entrypoint's rules choose all-in-one; their `envFrom` prefix ("prefixValue") cannot define
/// NO_BUILDKIT or BUILDKIT_HOST. Ephemeral containers are not classified: they are never part
/// of a pod at creation. `homelab__lamport-earthly-as-satellite` runs the `earthly/earthly`
/// image without BUILDKIT_HOST, so its entrypoint starts the embedded buildkitd (all-in-one);
/// the full homelab file runs `earthly/satellite` (buildkitd). The Jenkins agent sets
/// NO_BUILDKIT=1 (client); its verbatim template has `value: true`, which kubectl refuses too.
/// The satellite Pod from Earthly's docs is broken YAML upstream.
const EXPECTED: &[&str] = &[
    "apps.v1.DaemonSet.buildkitd.as-created.json | DaemonSet nameValue | containers[0] nameValue | buildkitd Earthly",
    "apps.v1.DaemonSet.buildkitd.json | DaemonSet nameValue | containers[0] nameValue | buildkitd Earthly",
    "apps.v1.DaemonSet.earthly.json | DaemonSet nameValue | containers[0] nameValue | all-in-one Earthly",
    "apps.v1.Deployment.buildkitd.as-created.3-replicas.json | Deployment nameValue | containers[0] nameValue | buildkitd Earthly",
    "apps.v1.Deployment.buildkitd.as-created.json | Deployment nameValue | containers[0] nameValue | buildkitd Earthly",
    "apps.v1.Deployment.buildkitd.json | Deployment nameValue | containers[0] nameValue | buildkitd Earthly",
    "apps.v1.Deployment.earthly.json | Deployment nameValue | containers[0] nameValue | all-in-one Earthly",
    "apps.v1.ReplicaSet.buildkitd.json | ReplicaSet nameValue | containers[0] nameValue | buildkitd Earthly",
    "apps.v1.ReplicaSet.earthly.json | ReplicaSet nameValue | containers[0] nameValue | all-in-one Earthly",
    "apps.v1.StatefulSet.buildkitd.as-created.3-replicas.json | StatefulSet nameValue | containers[0] nameValue | buildkitd Earthly",
    "apps.v1.StatefulSet.buildkitd.as-created.json | StatefulSet nameValue | containers[0] nameValue | buildkitd Earthly",
    "apps.v1.StatefulSet.buildkitd.json | StatefulSet nameValue | containers[0] nameValue | buildkitd Earthly",
    "apps.v1.StatefulSet.earthly.json | StatefulSet nameValue | containers[0] nameValue | all-in-one Earthly",
    "batch.v1.CronJob.buildkitd.json | CronJob nameValue | containers[0] nameValue | buildkitd Earthly",
    "batch.v1.CronJob.earthly.json | CronJob nameValue | containers[0] nameValue | all-in-one Earthly",
    "batch.v1.Job.buildkitd.json | Job nameValue | containers[0] nameValue | buildkitd Earthly",
    "batch.v1.Job.earthly.json | Job nameValue | containers[0] nameValue | all-in-one Earthly",
    "core.v1.Pod.buildkitd.as-created.json | Pod nameValue | containers[0] nameValue | buildkitd Earthly",
    "core.v1.Pod.buildkitd.json | Pod nameValue | containers[0] nameValue | buildkitd Earthly",
    "core.v1.Pod.earthly-unprivileged.json | Pod nameValue | containers[0] nameValue | all-in-one Earthly",
    "core.v1.Pod.earthly.json | Pod nameValue | containers[0] nameValue | all-in-one Earthly",
    "core.v1.Pod.init-buildkitd.json | Pod nameValue | initContainers[0] nameValue | buildkitd Earthly",
    "core.v1.PodTemplate.buildkitd.json | PodTemplate nameValue | containers[0] nameValue | buildkitd Earthly",
    "core.v1.PodTemplate.earthly.json | PodTemplate nameValue | containers[0] nameValue | all-in-one Earthly",
    "ci-examples-first-commit__buildkit.yaml | Deployment earthly-buildkitd | containers[0] buildkitd | buildkitd Earthly",
    "ci-examples-first-commit__earthly.yaml | Job earthly | containers[0] earthly | client Earthly",
    "ci-examples__all-in-one__earthly.yaml | Job earthly | containers[0] earthly | all-in-one Earthly",
    "ci-examples__remote-buildkitd__buildkit.yaml | Deployment earthly-buildkitd | containers[0] buildkitd | buildkitd Earthly",
    "ci-examples__remote-buildkitd__earthly.yaml | Job earthly | containers[0] earthly | client Earthly",
    "defn-dev__k-dev-main-2022-07-23.yaml | StatefulSet dev | containers[4] buildkitd | buildkitd Earthly",
    "defn-dev__k-dev-main-2022-07-28.yaml | StatefulSet dev | containers[2] buildkitd | buildkitd Earthly",
    "defn-dev__tf-do-dev.yaml | StatefulSet remo | containers[1] buildkitd | buildkitd Earthly",
    "earthbuild-helm-buildkitd__rendered-cd13da3-tilt.yaml | StatefulSet buildkitd-stack-dev-buildkitd | containers[0] buildkitd-stack | buildkitd Earthly",
    "earthbuild-helm-buildkitd__rendered-defaults.yaml | StatefulSet bk-buildkitd | containers[0] buildkitd-stack | buildkitd Earthly",
    "earthly-docs__self-hosted-satellite-pod.yaml | document 1 | not YAML",
    "homelab__lamport-earthly-as-satellite.yaml | Deployment lamport-earthly | containers[0] main | all-in-one Earthly",
    "homelab__lamport.k8s.full.yaml | Deployment lamport-earthly | containers[0] main | buildkitd Earthly",
    "jenkins-macos-cross-compiler__pod-as-submitted.yaml | Pod macos-cross-compiler-agent | containers[1] earthly | client Earthly",
    "jenkins-macos-cross-compiler__pod-template-verbatim.yaml | Pod macos-cross-compiler-agent | not a pod spec",
];

/// The pod spec and the detection and mutation of the first object of `kind` in a fixture.
fn judged(file: &str, kind: &str) -> (Vec<Warning>, mutate::Mutation) {
    let path = Path::new(DATA).join(file);
    let object = documents(&path)
        .into_iter()
        .map(|d| d.expect("readable"))
        .find(|o| o["kind"] == kind)
        .expect("object of that kind");
    let t = template(&object).expect("a pod template");
    let spec: PodSpec = serde_json::from_value(t["spec"].clone()).expect("pod spec");
    let config = Config::default();
    let classified = Detector::new(&config.detection)
        .expect("detector")
        .classify(None, &spec)
        .expect("valid");
    let m = mutate::mutate(&spec, "/spec", &classified, &config.mutation);
    (classified.notes, m)
}

#[test]
fn command_that_replaces_the_entrypoint_is_said_for_the_api_fixture() {
    let (notes, m) = judged("k8s-api-testdata/core.v1.Pod.earthly.json", "Pod");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].rule, RuleId::RoleAssumed);
    assert!(
        notes[0]
            .message
            .contains("its command replaces the image's entrypoint"),
        "{notes:?}"
    );
    // The container sets runAsNonRoot: true; hostUsers is true there, os.name is not windows.
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(
        m.warnings[0].rule == RuleId::RunAsNonRoot
            && m.warnings[0]
                .message
                .contains("spec.containers[0].securityContext.runAsNonRoot is true"),
        "{:?}",
        m.warnings
    );
}

#[test]
fn container_run_as_non_root_false_overrides_the_pods_true() {
    // The homelab Deployment: pod runAsNonRoot: true, the Earthly container runAsNonRoot: false,
    // privileged, with its PVC at /tmp/earthly: nothing to change and nothing to warn about.
    let (notes, m) = judged(
        "manifests/homelab__lamport-earthly-as-satellite.yaml",
        "Deployment",
    );
    assert!(notes.is_empty(), "{notes:?}");
    assert!(m.is_empty(), "{:?}", m.patch);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn sidecar_free_remote_client_example_gets_nothing() {
    let (notes, m) = judged(
        "manifests/ci-examples__remote-buildkitd__earthly.yaml",
        "Job",
    );
    assert!(notes.is_empty(), "{notes:?}");
    assert!(m.is_empty() && m.warnings.is_empty(), "{m:?}");
}
