//! Property tests for "any valid pod": the patch applies, the result is a Pod, every Earthly
//! container that needs it ends privileged with a scratch mount, nothing else changes, and a
//! second pass yields no operations. 10 000 cases per property by default.

use earthly_webhook::config::Config;
use earthly_webhook::detect::{ContainerList, Detector, Found};
use earthly_webhook::mutate::{self, scratch_path};
use earthly_webhook::rule_id::RuleId;
use k8s_openapi::api::core::v1::{Container, Pod};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const CASES: u32 = 10_000;

const IMAGES: &[&str] = &[
    "earthly/earthly:v0.8.15",
    "docker.io/earthly/earthly",
    "earthly/buildkitd:v0.8.15",
    "registry.example.com:5000/mirror/earthly/buildkitd@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "earthly/satellite:v0.8.0",
    "earthbuild/earthbuild:v0.8.16",
    "ghcr.io/earthbuild/buildkitd:main",
    "nginx:1.27",
    "busybox",
    "notearthly/buildkitd",
];

const ENV: &[(&str, &str)] = &[
    ("EARTHLY_TMP_DIR", "/scratch"),
    ("EARTHLY_TMP_DIR", "/tmp/earthly/"),
    ("EARTHLY_TMP_DIR", "relative/dir"),
    ("BUILDKIT_HOST", "tcp://earthly-buildkitd:8372"),
    ("BUILDKIT_HOST", "tcp://127.0.0.1:8372"),
    ("EARTHLY_TMP_DIR", "/scratch/earthly"),
    ("EARTH_TMP_DIR", "/scratch/earthbuild"),
    ("BUILDKIT_HOST", "unix:///run/buildkit/buildkitd.sock"),
    ("EARTHLY_BUILDKIT_HOST", "tcp://earthly-buildkitd:8372"),
    ("NO_BUILDKIT", "1"),
    ("NO_BUILDKIT", "false"),
    ("NO_BUILDKIT", ""),
    ("CNI_MTU", "1400"),
    ("NO_DOCKER", "1"),
];

/// Mount paths, the volume each uses and whether it is read-only; mounts always name a volume
/// the pod has.
const MOUNTS: &[(&str, &str, bool)] = &[
    ("/tmp/earthly", "mine", false),
    ("/workspace", "workspace", false),
    ("/scratch", "scratch", false),
    ("/tmp/earthly", "earthly-tmp", false),
    ("/tmp", "tmp", false),
    ("/scratch", "cache", true),
    ("/tmp/earthbuild", "mine", false),
];

fn security_context() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!({}))),
        Just(Some(json!({"privileged": false}))),
        Just(Some(json!({"privileged": true}))),
        Just(Some(
            json!({"privileged": false, "allowPrivilegeEscalation": false, "runAsUser": 0})
        )),
        Just(Some(json!({"capabilities": {"drop": ["ALL"]}}))),
        Just(Some(json!({"runAsNonRoot": true}))),
        Just(Some(json!({"runAsNonRoot": false}))),
    ]
}

/// A `command` that replaces the image's entrypoint, or runs it.
const COMMANDS: &[&[&str]] = &[&["sleep", "1h"], &["/usr/bin/earthly-entrypoint.sh"]];

/// `envFrom` sources: one that may define any variable, one whose prefix rules them out.
fn env_from() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!([{"configMapRef": {"name": "ci-env"}}])),
        Just(json!([{"prefix": "APP_", "secretRef": {"name": "app"}}])),
    ]
}

fn container(name: String, init: bool) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(IMAGES),
        prop::option::of(prop::sample::subsequence(ENV, 0..=3)),
        security_context(),
        prop::option::of(prop::sample::subsequence(MOUNTS, 0..=2)),
        prop::option::of(prop::sample::select(COMMANDS)),
        prop::option::of(env_from()),
        // Only init containers take a restartPolicy (Always: a native sidecar).
        prop::bool::weighted(if init { 0.5 } else { 0.0 }),
    )
        .prop_map(
            move |(image, env, sc, mounts, command, env_from, sidecar)| {
                let mut c = Map::new();
                c.insert("name".into(), json!(name));
                c.insert("image".into(), json!(image));
                if let Some(env) = env {
                    let env: Vec<Value> = env
                        .iter()
                        .map(|(k, v)| json!({"name": k, "value": v}))
                        .collect();
                    c.insert("env".into(), Value::Array(env));
                }
                if let Some(sc) = sc {
                    c.insert("securityContext".into(), sc);
                }
                if let Some(command) = command {
                    c.insert("command".into(), json!(command));
                }
                if let Some(env_from) = env_from {
                    c.insert("envFrom".into(), env_from);
                }
                if sidecar {
                    c.insert("restartPolicy".into(), json!("Always"));
                }
                if let Some(mounts) = mounts {
                    // Two mounts at one path are invalid in Kubernetes: keep the first.
                    let mut seen = Vec::new();
                    let mounts: Vec<Value> = mounts
                        .iter()
                        .filter(|(p, ..)| {
                            let new = !seen.contains(p);
                            seen.push(*p);
                            new
                        })
                        .map(|(p, v, ro)| json!({"name": v, "mountPath": p, "readOnly": ro}))
                        .collect();
                    c.insert("volumeMounts".into(), Value::Array(mounts));
                }
                Value::Object(c)
            },
        )
}

fn containers(
    prefix: &'static str,
    range: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = Vec<Value>> {
    range.prop_flat_map(move |n| {
        (0..n)
            .map(|i| container(format!("{prefix}{i}"), prefix == "init"))
            .collect::<Vec<_>>()
    })
}

fn toleration() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(
            json!({"key": "earthly.dev/privileged", "operator": "Exists", "effect": "NoSchedule"})
        ),
        Just(
            json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        ),
        Just(json!({"key": "pool", "value": "priv", "effect": "NoSchedule"})),
    ]
}

prop_compose! {
    fn pod()(
        init in prop::option::of(containers("init", 0..=2)),
        main in containers("c", 1..=3),
        extra_volumes in prop::option::of(prop::sample::subsequence(&["earthly-tmp", "earthly-tmp-1", "data"][..], 0..=3)),
        tolerations in prop::option::of(prop::collection::vec(toleration(), 0..=2)),
        node_selector in prop::option::of(prop::sample::select(vec![json!({}), json!({"earthly.dev/pool": "other"}), json!({"zone": "a"})])),
        affinity in prop::option::of(prop::sample::select(vec![json!({}), json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}), json!({"podAntiAffinity": {}})])),
        role in prop::option::of(prop::sample::select(vec!["none", "all-in-one", "buildkitd", "client"])),
        pod_security in prop::option::of(prop::sample::select(vec![json!({}), json!({"runAsNonRoot": true}), json!({"runAsUser": 0})])),
        host_users in prop::option::of(any::<bool>()),
        os in prop::option::of(prop::sample::select(vec!["linux", "windows"])),
    ) -> Value {
        let mut spec = Map::new();
        // Volumes: every one a mount names, plus extras (named like ours).
        let mut names: Vec<String> = Vec::new();
        for c in init.iter().flatten().chain(main.iter()) {
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                let n = m["name"].as_str().unwrap_or_default().to_owned();
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        for n in extra_volumes.iter().flatten() {
            if !names.iter().any(|x| x == n) {
                names.push((*n).to_owned());
            }
        }
        if !names.is_empty() || extra_volumes.is_some() {
            let volumes: Vec<Value> = names.iter().map(|n| json!({"name": n, "emptyDir": {}})).collect();
            spec.insert("volumes".into(), Value::Array(volumes));
        }
        if let Some(init) = init {
            spec.insert("initContainers".into(), Value::Array(init));
        }
        spec.insert("containers".into(), Value::Array(main));
        if let Some(t) = tolerations {
            spec.insert("tolerations".into(), Value::Array(t));
        }
        if let Some(s) = node_selector {
            spec.insert("nodeSelector".into(), s);
        }
        if let Some(a) = affinity {
            spec.insert("affinity".into(), a);
        }
        if let Some(sc) = pod_security {
            spec.insert("securityContext".into(), sc);
        }
        if let Some(h) = host_users {
            spec.insert("hostUsers".into(), json!(h));
        }
        if let Some(os) = os {
            spec.insert("os".into(), json!({"name": os}));
        }
        let mut metadata = json!({"name": "p", "namespace": "ci"});
        if let Some(role) = role {
            metadata["annotations"] = json!({"earthly.dev/role": role});
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
    }
}

fn placement_config() -> Config {
    Config::from_yaml(
        r#"
mutation:
  cniMtu: 1450
  tolerations:
    - {key: earthly.dev/privileged, operator: Exists, effect: NoSchedule}
    - {key: pool, value: priv, effect: NoSchedule}
  nodeSelector: {earthly.dev/pool: privileged, zone: b}
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{key: earthly.dev/pool, operator: In, values: [privileged]}]
"#,
        "prop",
    )
    .expect("config")
}

fn classify(pod: &Pod, detector: &Detector) -> Vec<Found> {
    detector
        .classify(
            pod.metadata.annotations.as_ref(),
            pod.spec.as_ref().expect("spec"),
        )
        .expect("valid annotations")
        .found
}

fn container_at<'a>(pod: &'a Pod, f: &Found) -> &'a Container {
    let spec = pod.spec.as_ref().expect("spec");
    match f.list {
        ContainerList::Containers => &spec.containers[f.index],
        ContainerList::InitContainers => &spec.init_containers.as_ref().expect("init")[f.index],
    }
}

/// Whether a changed or added JSON location is one the mutation may touch.
fn allowed_change(path: &[String]) -> bool {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    matches!(
        p.as_slice(),
        [
            "spec",
            "volumes" | "tolerations" | "nodeSelector" | "affinity",
            ..
        ] | [
            "spec",
            "containers" | "initContainers",
            _,
            "securityContext" | "volumeMounts" | "env",
            ..
        ]
    )
}

/// Every location of `before` is unchanged in `after`, and arrays only grow, except where
/// [`allowed_change`] permits. Returns the offending paths.
fn unexpected_changes(
    before: &Value,
    after: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<String>,
) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, bv) in b {
                path.push(k.clone());
                match a.get(k) {
                    Some(av) => unexpected_changes(bv, av, path, out),
                    None => out.push(format!("removed /{}", path.join("/"))),
                }
                path.pop();
            }
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                path.push(k.clone());
                if !allowed_change(path) {
                    out.push(format!("added /{}", path.join("/")));
                }
                path.pop();
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            if a.len() < b.len() {
                out.push(format!("shrunk /{}", path.join("/")));
                return;
            }
            for (i, bv) in b.iter().enumerate() {
                path.push(i.to_string());
                unexpected_changes(bv, &a[i], path, out);
                path.pop();
            }
            if a.len() > b.len() && !allowed_change(path) {
                out.push(format!("appended to /{}", path.join("/")));
            }
        }
        (Value::Null, _) if allowed_change(path) => {}
        (b, a) if b != a => {
            // Only the two booleans the privileged rule flips may change value.
            let flips = matches!(
                path.last().map(String::as_str),
                Some("privileged" | "allowPrivilegeEscalation")
            ) && a == &json!(true);
            if !(flips && allowed_change(path)) {
                out.push(format!("changed /{}: {b} -> {a}", path.join("/")));
            }
        }
        _ => {}
    }
}

fn check(pod_json: Value, config: &Config) -> Result<(), TestCaseError> {
    let detector = Detector::new(&config.detection).expect("detector");
    let pod: Pod = serde_json::from_value(pod_json.clone()).expect("generated pod is a Pod");
    let found = classify(&pod, &detector);
    let spec = pod.spec.as_ref().expect("spec");
    let m = mutate::mutate(spec, "/spec", &found, &config.mutation);

    // The patch applies and the result is a Pod.
    let mut patched = pod_json.clone();
    json_patch::patch(&mut patched, &m.patch)
        .map_err(|e| TestCaseError::fail(format!("patch does not apply: {e}\n{pod_json}")))?;
    let after: Pod = serde_json::from_value(patched.clone())
        .map_err(|e| TestCaseError::fail(format!("result is not a Pod: {e}")))?;

    let privileged: Vec<&Found> = found.iter().filter(|f| f.role.needs_privileges()).collect();
    let windows = spec.os.as_ref().is_some_and(|os| os.name == "windows");
    if windows {
        // The apiserver refuses privileged on a Windows pod: nothing is patched, and the user
        // is told why.
        prop_assert!(m.is_empty(), "a windows pod was patched: {:?}", m.patch);
        prop_assert_eq!(m.warnings.len(), usize::from(!privileged.is_empty()));
    }
    if !privileged.is_empty() && !windows && spec.host_users == Some(false) {
        prop_assert!(
            m.warnings
                .iter()
                .any(|w| w.rule == RuleId::HostUsersFalse
                    && w.message.contains("hostUsers is false"))
        );
    }

    // Every container that needs it ends privileged, with its scratch path on a volume the pod
    // has (the one added, or one the user mounted at or above it).
    let volumes: Vec<String> = after
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(|v| v.iter().map(|v| v.name.clone()).collect())
        .unwrap_or_default();
    for f in privileged.iter().filter(|_| !windows) {
        let before = container_at(&pod, f);
        let (path, _) = scratch_path(before, f.family);
        let c = container_at(&after, f);
        prop_assert!(mutate::is_privileged(c), "{} not privileged", c.name);
        let mount = mutate::scratch_mount(c, &path).map(|(_, m)| m.clone());
        prop_assert!(mount.is_some(), "{} has no mount at {path}", c.name);
        let mount = mount.expect("checked");
        prop_assert!(
            volumes.contains(&mount.name),
            "mount {} names no volume",
            mount.name
        );
        if mount.read_only == Some(true) {
            prop_assert!(
                m.warnings.iter().any(|w| w.rule == RuleId::ReadOnlyScratch
                    && w.message
                        .contains(&format!("container {} cannot write", c.name))),
                "read-only scratch of {} not warned about",
                c.name
            );
        }
        let non_root = |sc: Option<bool>| sc == Some(true);
        let own = before
            .security_context
            .as_ref()
            .and_then(|s| s.run_as_non_root);
        let pod_wide = spec
            .security_context
            .as_ref()
            .and_then(|s| s.run_as_non_root);
        if non_root(own) || (own.is_none() && non_root(pod_wide)) {
            prop_assert!(
                m.warnings.iter().any(|w| w.rule == RuleId::RunAsNonRoot
                    && w.message
                        .starts_with(&format!("container {} cannot run", c.name))),
                "runAsNonRoot on {} not warned about",
                c.name
            );
        }
        if c.security_context
            .as_ref()
            .and_then(|s| s.allow_privilege_escalation)
            == Some(false)
        {
            prop_assert!(
                false,
                "{} privileged with allowPrivilegeEscalation: false",
                c.name
            );
        }
    }
    // Volume names stay unique.
    let mut sorted = volumes.clone();
    sorted.sort();
    sorted.dedup();
    prop_assert_eq!(sorted.len(), volumes.len(), "duplicate volume names");

    // Nothing else changed.
    let mut problems = Vec::new();
    unexpected_changes(&pod_json, &patched, &mut Vec::new(), &mut problems);
    prop_assert!(problems.is_empty(), "unexpected changes: {problems:?}");
    if found.iter().all(|f| !f.role.needs_privileges()) {
        prop_assert!(
            m.is_empty(),
            "a pod without privileged Earthly containers was patched"
        );
    }

    // A second pass changes nothing.
    let again = mutate::mutate(
        after.spec.as_ref().expect("spec"),
        "/spec",
        &classify(&after, &detector),
        &config.mutation,
    );
    prop_assert!(again.is_empty(), "second pass patched: {:?}", again.patch);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn any_pod_with_default_config(pod in pod()) {
        check(pod, &Config::default())?;
    }

    #[test]
    fn any_pod_with_placement_and_mtu(pod in pod()) {
        check(pod, &placement_config())?;
    }
}
