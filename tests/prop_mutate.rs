//! Property tests of the mutation over generated pods: any mix of absent and present
//! `securityContext`, `env`, `volumes`, `volumeMounts`, `tolerations`, `nodeSelector`,
//! `affinity`, init containers, volumes already named like ours, mounts already at the scratch
//! path, `EARTHLY_TMP_DIR` set (or not absolute, or from a reference), Earthly and other images,
//! and role annotations. For each pod:
//! - the patch applies, and the result deserialises as a `Pod`;
//! - every container that needs privileges ends privileged with a mount at its scratch path,
//!   backed by a volume of the pod;
//! - nothing else changed: reverting exactly the changes the rules allow gives back the pod;
//! - a second pass over the result yields an empty patch.
//!
//! With the default config and with one that turns every rule on; 10,000 cases each (pure
//! functions, no server).

use std::collections::BTreeSet;

use earthly_webhook::config::Config;
use earthly_webhook::detect::{ContainerList, Detector, Found};
use earthly_webhook::mutate::{self, has_mount_at, is_privileged, scratch_path};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const CASES: u32 = 10_000;

const IMAGES: &[&str] = &[
    "earthly/earthly:v0.8.15",
    "docker.io/earthly/earthly",
    "earthly/buildkitd:v0.8.15",
    "earthly/satellite:v0.8.0",
    "registry.example.com:5000/mirror/earthly/buildkitd@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "nginx:1.27",
    "busybox",
    "ghcr.io/acme/earthly-runner:1",
    "notearthly/earthly",
];

fn image() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(0.95, prop::sample::select(IMAGES).prop_map(str::to_owned))
}

fn env_var() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "/tmp/earthly",
            "/tmp/earthly/",
            "/scratch",
            "/var//lib/./earthly",
            "relative/dir",
            "",
            " /padded ",
        ])
        .prop_map(|v| json!({"name": "EARTHLY_TMP_DIR", "value": v})),
        Just(
            json!({"name": "EARTHLY_TMP_DIR", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "dir"}}})
        ),
        prop::sample::select(vec!["1", "0", "false", "true"])
            .prop_map(|v| json!({"name": "NO_BUILDKIT", "value": v})),
        prop::sample::select(vec![
            "tcp://buildkitd.ci.svc:8372",
            "tcp://127.0.0.1:8372",
            "unix:///run/buildkit/buildkitd.sock",
        ])
        .prop_map(|v| json!({"name": "BUILDKIT_HOST", "value": v})),
        Just(json!({"name": "CNI_MTU", "value": "1400"})),
        Just(json!({"name": "NO_DOCKER", "value": "1"})),
        Just(json!({"name": "EMPTY"})),
    ]
}

fn security_context() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop::sample::select(vec![
        json!({}),
        json!({"privileged": true}),
        json!({"privileged": false}),
        json!({"allowPrivilegeEscalation": false}),
        json!({"allowPrivilegeEscalation": true, "runAsUser": 1000}),
        json!({"privileged": false, "allowPrivilegeEscalation": false, "runAsUser": 0}),
        json!({"capabilities": {"add": ["SYS_ADMIN"]}, "readOnlyRootFilesystem": true}),
    ]))
}

fn volume_mount() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["earthly-tmp", "earthly-tmp-1", "scratch", "data"]),
        prop::sample::select(vec![
            "/tmp/earthly",
            "/tmp/earthly/",
            "/scratch",
            "/data",
            "/var/lib/earthly",
        ]),
        any::<bool>(),
    )
        .prop_map(|(name, path, ro)| {
            if ro {
                json!({"name": name, "mountPath": path, "readOnly": true})
            } else {
                json!({"name": name, "mountPath": path})
            }
        })
}

/// A container without its name (names are given by position so they are unique).
fn container() -> impl Strategy<Value = Map<String, Value>> {
    (
        image(),
        prop::option::of(prop::collection::vec(env_var(), 0..4)),
        security_context(),
        prop::option::of(prop::collection::vec(volume_mount(), 0..3)),
        any::<bool>(),
    )
        .prop_map(|(image, env, sc, mounts, args)| {
            let mut c = Map::new();
            if let Some(i) = image {
                c.insert("image".into(), json!(i));
            }
            if let Some(e) = env {
                c.insert("env".into(), Value::Array(e));
            }
            if let Some(s) = sc {
                c.insert("securityContext".into(), s);
            }
            if let Some(m) = mounts {
                c.insert("volumeMounts".into(), Value::Array(m));
            }
            if args {
                c.insert("args".into(), json!(["+build"]));
            }
            c
        })
}

fn named(prefix: &str, list: Vec<Map<String, Value>>) -> Vec<Value> {
    list.into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            c.insert("name".into(), json!(format!("{prefix}{i}")));
            Value::Object(c)
        })
        .collect()
}

fn volume() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!({"name": "earthly-tmp", "emptyDir": {}}),
        json!({"name": "earthly-tmp-1", "emptyDir": {"sizeLimit": "1Gi"}}),
        json!({"name": "earthly-tmp-2", "hostPath": {"path": "/mnt"}}),
        json!({"name": "scratch", "emptyDir": {}}),
        json!({"name": "data", "persistentVolumeClaim": {"claimName": "data"}}),
    ])
}

fn toleration() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!({"key": "earthly.dev/privileged", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "earthly.dev/privileged", "operator": "Exists"}),
        json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
        json!({"operator": "Exists"}),
    ])
}

fn affinity() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!({}),
        json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}}),
        json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}}),
    ])
}

/// Role annotations, naming only containers that exist (a typo is an error the review reports,
/// not a mutation).
fn annotations(
    containers: usize,
    inits: usize,
) -> impl Strategy<Value = Option<Map<String, Value>>> {
    let role = || prop::sample::select(vec!["all-in-one", "buildkitd", "client", "none"]);
    let names: Vec<String> = (0..containers)
        .map(|i| format!("c{i}"))
        .chain((0..inits).map(|i| format!("i{i}")))
        .collect();
    (
        prop::option::of(role()),
        prop::collection::vec((prop::sample::select(names), role()), 0..3),
        any::<bool>(),
    )
        .prop_map(|(pod_wide, per, other)| {
            let mut a = Map::new();
            if let Some(r) = pod_wide {
                a.insert("earthly.dev/role".into(), json!(r));
            }
            for (name, r) in per {
                a.insert(format!("earthly.dev/role.{name}"), json!(r));
            }
            if other {
                a.insert("example.com/team".into(), json!("ci"));
            }
            (!a.is_empty()).then_some(a)
        })
}

fn pod() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(container(), 1..4),
        prop::option::of(prop::collection::vec(container(), 0..3)),
        prop::option::of(prop::collection::vec(volume(), 0..4)),
        prop::option::of(prop::collection::vec(toleration(), 0..3)),
        prop::option::of(prop::sample::select(vec![
            json!({}),
            json!({"earthly.dev/pool": "other"}),
            json!({"kubernetes.io/os": "linux"}),
        ])),
        prop::option::of(affinity()),
    )
        .prop_flat_map(
            |(containers, inits, volumes, tolerations, selector, affinity)| {
                let n_inits = inits.as_ref().map_or(0, Vec::len);
                let n_containers = containers.len();
                annotations(n_containers, n_inits).prop_map(move |annotations| {
                    let mut spec = Map::new();
                    spec.insert(
                        "containers".into(),
                        Value::Array(named("c", containers.clone())),
                    );
                    if let Some(i) = &inits {
                        spec.insert("initContainers".into(), Value::Array(named("i", i.clone())));
                    }
                    if let Some(v) = &volumes {
                        spec.insert("volumes".into(), Value::Array(v.clone()));
                    }
                    if let Some(t) = &tolerations {
                        spec.insert("tolerations".into(), Value::Array(t.clone()));
                    }
                    if let Some(s) = &selector {
                        spec.insert("nodeSelector".into(), s.clone());
                    }
                    if let Some(a) = &affinity {
                        spec.insert("affinity".into(), a.clone());
                    }
                    spec.insert("restartPolicy".into(), json!("Never"));
                    let mut metadata =
                        json!({"name": "p", "namespace": "ci", "labels": {"app": "earthly"}});
                    if let Some(a) = annotations {
                        metadata["annotations"] = Value::Object(a);
                    }
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
                       "spec": Value::Object(spec), "status": {"phase": "Pending"}})
                })
            },
        )
}

fn full_config() -> Config {
    Config::from_yaml(
        r#"
mutation:
  scratchVolume: {name: earthly-tmp, source: {emptyDir: {sizeLimit: 50Gi}}}
  cniMtu: 1450
  tolerations:
    - {key: earthly.dev/privileged, operator: Exists, effect: NoSchedule}
    - {key: dedicated, operator: Equal, value: ci, effect: NoSchedule}
  nodeSelector: {earthly.dev/pool: privileged, kubernetes.io/os: linux}
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{key: earthly.dev/pool, operator: In, values: [privileged]}]
"#,
        "test",
    )
    .expect("config")
}

fn typed_spec(doc: &Value) -> (Pod, PodSpec) {
    let pod: Pod = serde_json::from_value(doc.clone()).expect("a Pod");
    let spec = pod.spec.clone().expect("spec");
    (pod, spec)
}

fn classify(detector: &Detector, doc: &Value) -> (PodSpec, Vec<Found>) {
    let (pod, spec) = typed_spec(doc);
    let found = detector
        .classify(pod.metadata.annotations.as_ref(), &spec)
        .expect("valid annotations");
    (spec, found)
}

fn list(spec: &PodSpec, which: ContainerList) -> &[Container] {
    match which {
        ContainerList::Containers => &spec.containers,
        ContainerList::InitContainers => spec.init_containers.as_deref().unwrap_or_default(),
    }
}

/// Takes the elements `new` appended to `old` (both optional arrays), checking the prefix is
/// untouched; the field is restored to `old` in `new_parent`.
fn appended(
    old_parent: &Value,
    new_parent: &mut Value,
    field: &str,
) -> Result<Vec<Value>, TestCaseError> {
    let old = old_parent.get(field).cloned();
    let new = new_parent.get(field).cloned();
    let extra = match (&old, &new) {
        (None, None) => vec![],
        (None, Some(Value::Array(n))) => n.clone(),
        (Some(Value::Array(o)), Some(Value::Array(n))) => {
            prop_assert!(n.len() >= o.len(), "{field} lost elements");
            prop_assert_eq!(&n[..o.len()], &o[..], "{} prefix changed", field);
            n[o.len()..].to_vec()
        }
        (o, n) => {
            prop_assert_eq!(o, n, "{} changed shape", field);
            vec![]
        }
    };
    match old {
        Some(o) => new_parent[field] = o,
        None => {
            if let Some(m) = new_parent.as_object_mut() {
                m.remove(field);
            }
        }
    }
    Ok(extra)
}

/// Checks one pod against one config.
fn check(config: &Config, original: &Value) -> Result<(), TestCaseError> {
    let detector = Detector::new(&config.detection).expect("detector");
    let (spec, found) = classify(&detector, original);
    let m = mutate::mutate(&spec, "/spec", &found, &config.mutation);
    let mut result = original.clone();
    json_patch::patch(&mut result, &m.patch)
        .map_err(|e| TestCaseError::fail(format!("patch does not apply: {e}")))?;
    let (_, new_spec) = typed_spec(&result);

    let privileged: Vec<&Found> = found.iter().filter(|f| f.role.needs_privileges()).collect();
    if privileged.is_empty() {
        prop_assert!(
            m.is_empty(),
            "a pod with nothing to run privileged got a patch"
        );
    }

    // Every container that needs it ends privileged, with a mount at its scratch path (a mount
    // the webhook adds is backed by a volume it adds: checked below).
    for f in &privileged {
        let c = &list(&new_spec, f.list)[f.index];
        prop_assert!(is_privileged(c), "{} not privileged", c.name);
        let (path, _) = scratch_path(c);
        prop_assert!(
            has_mount_at(c, &path),
            "{} has no mount at {}",
            c.name,
            path
        );
    }

    // Nothing else changed: undo exactly what the rules may do, and the pod is back.
    let mut undone = result.clone();
    let orig_volume_names: BTreeSet<String> = original["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    let mut added_mount_volumes = Vec::new();
    for f in &privileged {
        let field = f.list.field();
        let at = f.index;
        let old_c = original["spec"][field][at].clone();
        let new_c = &mut undone["spec"][field][at];
        // securityContext: privileged true, and allowPrivilegeEscalation false turned true.
        match old_c.get("securityContext") {
            None => {
                if new_c.get("securityContext").is_some() {
                    prop_assert_eq!(&new_c["securityContext"], &json!({"privileged": true}));
                    if let Some(o) = new_c.as_object_mut() {
                        o.remove("securityContext");
                    }
                }
            }
            Some(old_sc) => {
                let new_sc = &mut new_c["securityContext"];
                prop_assert_eq!(&new_sc["privileged"], &json!(true));
                for key in ["privileged", "allowPrivilegeEscalation"] {
                    match old_sc.get(key) {
                        Some(v) => new_sc[key] = v.clone(),
                        None => {
                            if let Some(o) = new_sc.as_object_mut() {
                                o.remove(key);
                            }
                        }
                    }
                }
            }
        }
        let (path, _) = scratch_path(&list(&new_spec, f.list)[f.index]);
        let mounts = appended(&old_c, new_c, "volumeMounts")?;
        prop_assert!(mounts.len() <= 1, "more than one mount added");
        for mnt in mounts {
            prop_assert_eq!(&mnt["mountPath"], &json!(path));
            let name = mnt["name"].as_str().expect("mount name").to_owned();
            prop_assert!(
                !orig_volume_names.contains(&name),
                "mounted an existing volume {}",
                name
            );
            added_mount_volumes.push(name);
        }
        let env = appended(&old_c, new_c, "env")?;
        match config.mutation.cni_mtu {
            Some(mtu) => {
                let had = old_c["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| e["name"] == "CNI_MTU");
                let want: Vec<Value> = if had {
                    vec![]
                } else {
                    vec![json!({"name": "CNI_MTU", "value": mtu.to_string()})]
                };
                prop_assert_eq!(env, want);
            }
            None => prop_assert!(env.is_empty(), "env changed without cniMtu"),
        }
    }
    let spec_old = original["spec"].clone();
    let spec_new = &mut undone["spec"];
    let volumes = appended(&spec_old, spec_new, "volumes")?;
    let volume_names: Vec<String> = volumes
        .iter()
        .map(|v| v["name"].as_str().expect("volume name").to_owned())
        .collect();
    prop_assert_eq!(
        &volume_names,
        &added_mount_volumes,
        "volumes added != volumes mounted"
    );
    for v in &volumes {
        let mut source = v.as_object().expect("volume").clone();
        source.remove("name");
        prop_assert_eq!(
            &Value::Object(source),
            &Value::Object(config.mutation.scratch_volume.source.clone())
        );
    }
    let tolerations = appended(&spec_old, spec_new, "tolerations")?;
    let configured: Vec<Value> = config
        .mutation
        .tolerations
        .iter()
        .map(|t| serde_json::to_value(t).expect("toleration"))
        .collect();
    for t in &tolerations {
        prop_assert!(
            configured.contains(t),
            "added a toleration not configured: {}",
            t
        );
    }
    match (
        spec_old.get("nodeSelector"),
        spec_new.get("nodeSelector").cloned(),
    ) {
        (old, Some(Value::Object(new))) => {
            for (k, v) in &new {
                match old.and_then(|o| o.get(k)) {
                    Some(ov) => prop_assert_eq!(v, ov, "nodeSelector {} overridden", k),
                    None => prop_assert_eq!(
                        Some(v.as_str().unwrap_or_default()),
                        config.mutation.node_selector.get(k).map(String::as_str)
                    ),
                }
            }
            match old {
                Some(o) => spec_new["nodeSelector"] = o.clone(),
                None => {
                    if let Some(s) = spec_new.as_object_mut() {
                        s.remove("nodeSelector");
                    }
                }
            }
        }
        (old, new) => prop_assert_eq!(old.cloned(), new),
    }
    let old_affinity = spec_old.get("affinity").cloned();
    let had_node_affinity = old_affinity
        .as_ref()
        .and_then(|a| a.get("nodeAffinity"))
        .is_some();
    let added_node_affinity = if had_node_affinity {
        None
    } else {
        spec_new
            .get_mut("affinity")
            .and_then(Value::as_object_mut)
            .and_then(|a| a.remove("nodeAffinity"))
    };
    if let Some(na) = added_node_affinity {
        let want = serde_json::to_value(config.mutation.node_affinity.as_ref()).expect("affinity");
        prop_assert_eq!(na, want);
        if old_affinity.is_none() {
            prop_assert_eq!(&spec_new["affinity"], &json!({}));
            if let Some(s) = spec_new.as_object_mut() {
                s.remove("affinity");
            }
        }
    }
    prop_assert_eq!(&undone, original, "something else changed");

    // A second pass changes nothing.
    let (spec2, found2) = classify(&detector, &result);
    let again = mutate::mutate(&spec2, "/spec", &found2, &config.mutation);
    prop_assert!(again.is_empty(), "second pass patched: {:?}", again.patch);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn any_pod_with_the_default_config(pod in pod()) {
        check(&Config::default(), &pod)?;
    }

    #[test]
    fn any_pod_with_every_rule_on(pod in pod()) {
        check(&full_config(), &pod)?;
    }
}

#[test]
fn generator_covers_the_interesting_cases() {
    // A sample of generated pods holds each shape the properties are about.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let detector = Detector::new(&Config::default().detection).expect("detector");
    let (mut earthly, mut plain, mut init, mut taken, mut at_scratch, mut tmp_dir) =
        (0, 0, 0, 0, 0, 0);
    for _ in 0..2000 {
        let doc = pod().new_tree(&mut runner).expect("tree").current();
        let (spec, found) = classify(&detector, &doc);
        if found.iter().any(|f| f.role.needs_privileges()) {
            earthly += 1;
        } else {
            plain += 1;
        }
        init += usize::from(
            found
                .iter()
                .any(|f| f.list == ContainerList::InitContainers),
        );
        taken += usize::from(
            spec.volumes
                .iter()
                .flatten()
                .any(|v| v.name == "earthly-tmp"),
        );
        at_scratch += usize::from(
            spec.containers
                .iter()
                .any(|c| has_mount_at(c, "/tmp/earthly")),
        );
        tmp_dir += usize::from(
            spec.containers
                .iter()
                .any(|c| c.env.iter().flatten().any(|e| e.name == "EARTHLY_TMP_DIR")),
        );
    }
    for (what, n) in [
        ("Earthly pods", earthly),
        ("other pods", plain),
        ("Earthly init containers", init),
        ("pods with a volume named earthly-tmp", taken),
        ("pods with a mount at /tmp/earthly", at_scratch),
        ("pods with EARTHLY_TMP_DIR", tmp_dir),
    ] {
        assert!(n >= 100, "only {n} of 2000 generated pods are {what}");
    }
}
