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
