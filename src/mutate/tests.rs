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

#[test]
fn scratch_path_inside_a_mounted_volume_is_provided_storage() {
    // EARTHLY_TMP_DIR=/scratch/earthly with a PVC at /scratch: no emptyDir over the cache.
    let mut pod = bare("earthly/buildkitd");
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "EARTHLY_TMP_DIR", "value": "/scratch/earthly"}]);
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "cache", "mountPath": "/scratch"}]);
    pod["spec"]["volumes"] =
        json!([{"name": "cache", "persistentVolumeClaim": {"claimName": "bk"}}]);
    let (doc, m) = run(pod, &Config::default());
    assert_eq!(doc["spec"]["volumes"].as_array().map(Vec::len), Some(1));
    assert!(m.changes.iter().all(|c| c.rule != Rule::ScratchVolume));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn read_only_scratch_mount_is_warned_about_and_kept() {
    let mut pod = bare("earthly/earthly");
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "tmp", "mountPath": "/tmp", "readOnly": true}]);
    pod["spec"]["volumes"] = json!([{"name": "tmp", "emptyDir": {}}]);
    let (doc, m) = run(pod, &Config::default());
    assert_eq!(doc["spec"]["volumes"].as_array().map(Vec::len), Some(1));
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(
        m.warnings[0]
            .message
            .contains("spec.containers[0].volumeMounts[0].readOnly"),
        "{:?}",
        m.warnings
    );
    assert!(
        m.warnings[0].message.contains("set readOnly: false"),
        "{:?}",
        m.warnings
    );
}

#[test]
fn run_as_non_root_on_the_pod_is_warned_about() {
    let mut pod = bare("earthly/earthly");
    pod["spec"]["securityContext"] = json!({"runAsNonRoot": true});
    let (_, m) = run(pod.clone(), &Config::default());
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(
        m.warnings[0]
            .message
            .contains("spec.securityContext.runAsNonRoot is true"),
        "{:?}",
        m.warnings
    );
    assert!(
        m.warnings[0]
            .message
            .contains("set spec.containers[0].securityContext.runAsNonRoot to false"),
        "{:?}",
        m.warnings
    );
    // The container's own false overrides the pod's true.
    pod["spec"]["containers"][0]["securityContext"] = json!({"runAsNonRoot": false});
    let (_, m) = run(pod, &Config::default());
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn run_as_non_root_on_the_container_is_warned_about() {
    let mut pod = bare("earthly/buildkitd");
    pod["spec"]["containers"][0]["securityContext"] = json!({"runAsNonRoot": true});
    let (_, m) = run(pod, &Config::default());
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(
        m.warnings[0]
            .message
            .contains("spec.containers[0].securityContext.runAsNonRoot is true"),
        "{:?}",
        m.warnings
    );
}

#[test]
fn host_users_false_is_warned_about() {
    let mut pod = bare("earthly/earthly");
    pod["spec"]["hostUsers"] = json!(false);
    let (_, m) = run(pod, &Config::default());
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(
        m.warnings[0].message.starts_with("spec.hostUsers is false"),
        "{:?}",
        m.warnings
    );
}

#[test]
fn windows_pod_is_left_unchanged_and_said_why() {
    let cfg = config("mutation: {cniMtu: 1450, nodeSelector: {pool: priv}}");
    let mut pod = bare("earthly/earthly");
    pod["spec"]["os"] = json!({"name": "windows"});
    let (_, m) = run(pod, &cfg);
    assert!(m.is_empty(), "{:?}", m.patch);
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(
        m.warnings[0]
            .message
            .contains("refuses privileged for a windows pod"),
        "{:?}",
        m.warnings
    );
}

#[test]
fn client_of_a_sidecar_stays_unprivileged_and_the_sidecar_is_privileged() {
    let mut pod = bare("earthly/earthly");
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "BUILDKIT_HOST", "value": "tcp://127.0.0.1:8372"}]);
    pod["spec"]["initContainers"] =
        json!([{"name": "bk", "image": "earthly/buildkitd", "restartPolicy": "Always"}]);
    let (doc, m) = run(pod, &Config::default());
    assert!(
        doc["spec"]["containers"][0]
            .get("securityContext")
            .is_none()
    );
    assert!(doc["spec"]["containers"][0].get("volumeMounts").is_none());
    assert_eq!(
        doc["spec"]["initContainers"][0]["securityContext"]["privileged"],
        json!(true)
    );
    assert_eq!(doc["spec"]["volumes"].as_array().map(Vec::len), Some(1));
    assert!(m.changes.iter().all(|c| c.message.contains("container bk")));
}

#[test]
fn earthbuild_runner_gets_its_own_scratch_path() {
    let (doc, _) = run(bare("earthbuild/earthbuild:v0.8.16"), &Config::default());
    assert_eq!(
        doc["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
        json!("/tmp/earthbuild")
    );
    let mut pod = bare("earthbuild/buildkitd");
    pod["spec"]["containers"][0]["env"] = json!([{"name": "EARTH_TMP_DIR", "value": "/cache"}]);
    let (doc, _) = run(pod, &Config::default());
    assert_eq!(
        doc["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
        json!("/cache")
    );
}

#[test]
fn earthly_tmp_dir_does_not_move_an_earthbuild_default_when_earth_tmp_dir_is_set() {
    let mut pod = bare("earthbuild/earthbuild");
    pod["spec"]["containers"][0]["env"] = json!([
        {"name": "EARTHLY_TMP_DIR", "value": "/old"},
        {"name": "EARTH_TMP_DIR", "value": "/new"}
    ]);
    let (doc, _) = run(pod, &Config::default());
    assert_eq!(
        doc["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
        json!("/new")
    );
}
