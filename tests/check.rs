//! `earthly-webhook check`: the real binary over realistic manifests (golden transcripts, exit
//! codes, stdin, broken input, output formats), and "one policy, two front ends": every
//! captured AdmissionReview answered by the HTTPS server and by the check front end alike.
//!
//! Goldens live in `tests/data/golden/`; after a deliberate change, regenerate them with
//! `UPDATE_GOLDEN=1 cargo test --test check` and review the diff.

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use common::{Options, TestServer, fixture, fixture_names, patch_of, patched_pod, response};
use earthly_webhook::check::input::parse_documents;
use earthly_webhook::check::request::{Submission, Subresource, review_object};
use earthly_webhook::check::{CheckOptions, Outcome, check_documents};
use earthly_webhook::cluster::{MemoryCluster, Workload, WorkloadKind};
use earthly_webhook::config::{Config, Mode};
use earthly_webhook::review::{Action, Policy, Route};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::core::GroupVersionResource;
use kube::core::admission::Operation;
use serde::Deserialize;
use serde_json::{Value, json};

const EXAMPLES: &str = "tests/data/manifests/earthly-ci-examples";
const ALL_IN_ONE: &str = "tests/data/manifests/earthly-ci-examples/all-in-one-earthly.yaml";
const DENIED: &str = "tests/data/manifests/role-annotation-denied.yaml";
const BROKEN: &str = "tests/data/manifests/broken/broken-indentation.yaml";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the real binary from the crate root, so paths in its output are the relative ones
/// given here, with nothing inherited that could change its answer.
fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_earthly-webhook"));
    cmd.arg("check")
        .args(args)
        .current_dir(root())
        .env_remove("EARTHLY_WEBHOOK_CONFIG")
        .env_remove("EARTHLY_WEBHOOK_CHECK_NAMESPACE")
        .env_remove("EARTHLY_WEBHOOK_CHECK_MODE")
        .env_remove("EARTHLY_WEBHOOK_CHECK_OUTPUT")
        .env_remove("EARTHLY_WEBHOOK_LOG_LEVEL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("binary starts");
    {
        let mut pipe = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            pipe.write_all(bytes).expect("write stdin");
        }
    }
    child.wait_with_output().expect("binary finishes")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("UTF-8 stderr")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

/// The run as a transcript: command, exit status, stdout and stderr.
fn transcript(args: &[&str], o: &Output) -> String {
    let mut t = format!(
        "$ earthly-webhook check {}\nexit status: {}\n",
        args.join(" "),
        code(o)
    );
    for (name, text) in [("stdout", stdout(o)), ("stderr", stderr(o))] {
        if !text.is_empty() {
            t.push_str(&format!("--- {name}\n{text}"));
            if !text.ends_with('\n') {
                t.push_str("\n(no newline at end)\n");
            }
        }
    }
    t
}

/// Compares a run with its golden transcript, or rewrites it under `UPDATE_GOLDEN=1`.
fn golden(name: &str, args: &[&str]) {
    let file = name.strip_prefix("golden_").unwrap_or(name);
    let path: PathBuf = root().join("tests/data/golden").join(format!("{file}.txt"));
    let actual = transcript(args, &run(args, None));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with UPDATE_GOLDEN=1 cargo test --test check",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs; if the change is intended, run UPDATE_GOLDEN=1 cargo test --test check\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

macro_rules! golden_tests {
    ($($name:ident: [$($arg:expr),* $(,)?];)*) => {
        $(
            #[test]
            fn $name() {
                golden(stringify!($name), &[$($arg),*]);
            }
        )*
    };
}

golden_tests! {
    golden_earthly_ci_examples_text: ["-f", EXAMPLES];
    golden_earthly_ci_examples_yaml: ["-f", EXAMPLES, "-o", "yaml"];
    golden_earthly_ci_examples_json: ["-f", EXAMPLES, "-o", "json"];
    golden_earthly_ci_examples_patch: ["-f", EXAMPLES, "-o", "patch"];
    golden_helm_template_text: ["-f", "tests/data/manifests/helm-earthly-ci.yaml", "--namespace", "earthly-ci"];
    golden_helm_template_yaml: ["-f", "tests/data/manifests/helm-earthly-ci.yaml", "--namespace", "earthly-ci", "-o", "yaml"];
    golden_kubectl_list_text: ["-f", "tests/data/manifests/kubectl-get-list.yaml"];
    golden_kubectl_list_yaml: ["-f", "tests/data/manifests/kubectl-get-list.yaml", "-o", "yaml"];
    golden_pod_without_trailing_newline_text: ["-f", "tests/data/manifests/pod-no-trailing-newline.yaml"];
    golden_pod_json_patch: ["-f", "tests/data/manifests/pod.json", "-o", "patch"];
    golden_multi_node_buildkitd_text: ["-f", "tests/data/manifests/multi-node-buildkitd.yaml"];
    golden_blue_green_buildkitd_text: ["-f", "tests/data/manifests/blue-green-buildkitd.yaml"];
    golden_role_annotation_denied_text: ["-f", DENIED];
    golden_role_annotation_warn_mode_text: ["-f", DENIED, "--mode", "warn"];
    golden_role_annotation_audit_mode_json: ["-f", DENIED, "--mode", "audit", "-o", "json"];
    golden_broken_yaml: ["-f", "tests/data/manifests/pod.json", "-f", BROKEN];
}

#[test]
fn exit_code_is_0_when_everything_is_admitted() {
    let o = run(&["-f", EXAMPLES], None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).is_empty());
}

#[test]
fn exit_code_is_1_when_something_is_denied() {
    let o = run(&["-f", DENIED], None);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains(
        "  denied: Job ci/earthly-build: annotation earthly.dev/role: \"root\" is not a role"
    ));
}

#[test]
fn warn_mode_exits_0_with_the_denial_as_a_warning() {
    let o = run(&["-f", DENIED, "--mode", "warn"], None);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains(
        "  warning: Pod ci/earthly-build-*: annotation earthly.dev/role: \"root\" is not a role"
    ));
    assert!(stdout(&o).contains("checked in warn mode"));
}

#[test]
fn mode_comes_from_the_policy_file_when_not_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("policy.yaml");
    std::fs::write(&config, "policy:\n  defaultMode: warn\n").expect("write");
    let config = config.to_str().expect("UTF-8 path");
    let o = run(&["-f", DENIED, "--config", config], None);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let o = run(
        &["-f", DENIED, "--config", config, "--mode", "enforce"],
        None,
    );
    assert_eq!(code(&o), 1);
}

#[test]
fn broken_yaml_exits_2_naming_file_and_document() {
    let o = run(&["-f", BROKEN], None);
    assert_eq!(code(&o), 2);
    assert!(stdout(&o).is_empty(), "no report for broken input");
    assert_eq!(
        stderr(&o),
        "error: tests/data/manifests/broken/broken-indentation.yaml document 2: while parsing a block mapping, did not find expected key at line 10 column 2\n"
    );
}

#[test]
fn broken_stdin_is_named_stdin() {
    let o = run(
        &["-f", "-"],
        Some(b"apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n- not\n- an object\n"),
    );
    assert_eq!(code(&o), 2);
    assert_eq!(
        stderr(&o),
        "error: <stdin> document 2: expected a Kubernetes object (a mapping with apiVersion and kind), found a sequence\n"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["-f", EXAMPLES, "--mode", "strict"],
        &["-f", EXAMPLES, "-o", "xml"],
        &["-f", EXAMPLES, "--namespace", "Not_A_Namespace"],
        &["-f", EXAMPLES, "--no-such-flag"],
    ] {
        let o = run(args, None);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
}

#[test]
fn missing_file_and_bad_policy_file_exit_2() {
    let o = run(&["-f", "tests/data/manifests/nope.yaml"], None);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).starts_with("error: tests/data/manifests/nope.yaml: "),
        "{}",
        stderr(&o)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("policy.yaml");
    std::fs::write(&config, "policy:\n  defaultMode: block\n").expect("write");
    let o = run(
        &["-f", EXAMPLES, "--config", config.to_str().expect("UTF-8")],
        None,
    );
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
}

#[test]
fn empty_input_exits_2() {
    let o = run(&["-f", "-"], Some(b"# nothing here\n---\n"));
    assert_eq!(code(&o), 2);
    assert_eq!(stderr(&o), "error: no Kubernetes objects in the input\n");
}

#[test]
fn reads_manifests_from_stdin() {
    let file = std::fs::read(root().join(ALL_IN_ONE)).expect("manifest");
    let from_stdin = run(&["-f", "-"], Some(&file));
    let from_file = run(&["-f", ALL_IN_ONE], None);
    assert_eq!(code(&from_stdin), 0);
    assert_eq!(
        stdout(&from_stdin),
        stdout(&from_file).replace(ALL_IN_ONE, "<stdin>")
    );
    let yaml = run(&["-f", "-", "-o", "yaml"], Some(&file));
    assert_eq!(
        stdout(&yaml),
        stdout(&run(&["-f", ALL_IN_ONE, "-o", "yaml"], None))
    );
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("output is YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn yaml_output_reads_back_as_kubernetes_objects_with_the_patch_applied() {
    let o = run(&["-f", EXAMPLES, "-o", "yaml"], None);
    assert_eq!(code(&o), 0);
    let docs = yaml_documents(&stdout(&o));
    assert_eq!(docs.len(), 4);
    let job: Job = serde_json::from_value(docs[0].clone()).expect("a Job");
    let spec = job
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod template spec");
    let earthly = &spec.containers[0];
    assert_eq!(
        earthly.security_context.as_ref().and_then(|s| s.privileged),
        Some(true)
    );
    let mount = earthly
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|m| m.mount_path == "/tmp/earthly")
        .expect("scratch mount");
    let volume = spec
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| v.name == mount.name)
        .expect("scratch volume");
    assert!(volume.empty_dir.is_some());
    let _: Deployment = serde_json::from_value(docs[1].clone()).expect("a Deployment");
    let _: Service = serde_json::from_value(docs[2].clone()).expect("a Service");
    let client: Job = serde_json::from_value(docs[3].clone()).expect("a Job");
    // The remote client needs no privileges and is left as written.
    let written = parse_documents(
        "x",
        &std::fs::read_to_string(root().join(EXAMPLES).join("remote-buildkitd-earthly.yaml"))
            .expect("read"),
    )
    .expect("parse");
    assert_eq!(
        serde_json::to_value(&client).expect("json"),
        serde_json::to_value(serde_json::from_value::<Job>(written[0].value.clone()).expect("job"))
            .expect("json")
    );
}

#[test]
fn checking_the_yaml_output_again_changes_nothing() {
    for (file, namespace) in [
        (EXAMPLES, "default"),
        ("tests/data/manifests/helm-earthly-ci.yaml", "earthly-ci"),
        ("tests/data/manifests/kubectl-get-list.yaml", "default"),
        (
            "tests/data/manifests/pod-no-trailing-newline.yaml",
            "default",
        ),
        ("tests/data/manifests/pod.json", "default"),
    ] {
        let first = run(&["-f", file, "-n", namespace, "-o", "yaml"], None);
        assert_ne!(code(&first), 2, "{file}: {}", stderr(&first));
        let second = run(
            &["-f", "-", "-n", namespace, "-o", "json"],
            Some(&first.stdout),
        );
        let report: Value = serde_json::from_slice(&second.stdout).expect("json");
        assert_eq!(report["summary"]["mutated"], json!(0), "{file}: {report:#}");
        // And the round trip through YAML kept every value, strings like "on" included.
        let again = run(
            &["-f", "-", "-n", namespace, "-o", "yaml"],
            Some(&first.stdout),
        );
        assert_eq!(stdout(&again), stdout(&first), "{file}");
    }
}

#[test]
fn yaml_output_quotes_strings_kubectl_would_read_as_booleans() {
    let o = run(
        &[
            "-f",
            "tests/data/manifests/helm-earthly-ci.yaml",
            "-o",
            "yaml",
        ],
        None,
    );
    let out = stdout(&o);
    assert!(out.contains("  FORCE_COLOR: \"off\"\n"), "{out}");
    assert!(out.contains("  NO_COLOR: \"1\"\n"), "{out}");
    assert!(out.contains("# Source: earthly-ci/templates/nightly-cronjob.yaml\n"));
}

#[test]
fn denied_objects_are_left_out_of_the_yaml_output() {
    let o = run(&["-f", DENIED, "-o", "yaml"], None);
    assert_eq!(code(&o), 1);
    let docs = yaml_documents(&stdout(&o));
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["kind"], "ConfigMap");
    // The report goes to stderr, so stdout can be piped into kubectl.
    assert!(stderr(&o).contains("Job ci/earthly-build: denied"));
}

#[test]
fn patch_output_applies_to_the_manifest_and_gives_the_yaml_output() {
    let patches = stdout(&run(&["-f", EXAMPLES, "-o", "patch"], None));
    let yaml = yaml_documents(&stdout(&run(&["-f", EXAMPLES, "-o", "yaml"], None)));
    let (header, body) = patches.split_once('\n').expect("header line");
    assert_eq!(
        header,
        "# Job default/earthly (tests/data/manifests/earthly-ci-examples/all-in-one-earthly.yaml document 1)"
    );
    let patch: json_patch::Patch = serde_json::from_str(body).expect("one JSON patch");
    let written = std::fs::read_to_string(root().join(ALL_IN_ONE)).expect("read");
    let mut job = parse_documents("x", &written).expect("parse")[0]
        .value
        .clone();
    json_patch::patch(&mut job, &patch).expect("patch applies");
    assert_eq!(job, yaml[0]);
}

#[test]
fn json_report_has_the_documented_fields() {
    let o = run(&["-f", EXAMPLES, "-o", "json"], None);
    let report: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object().expect("object").keys().cloned().collect()
    };
    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|s| s.to_string()).collect() };
    assert_eq!(
        keys(&report),
        set(&["version", "mode", "summary", "objects"])
    );
    assert_eq!(report["version"], json!(1));
    assert_eq!(report["mode"], json!("enforce"));
    assert_eq!(
        keys(&report["summary"]),
        set(&["objects", "allowed", "mutated", "denied", "warnings"])
    );
    assert_eq!(report["summary"]["objects"], json!(4));
    assert_eq!(report["summary"]["mutated"], json!(1));
    let warnings: usize = report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["warnings"].as_array().expect("warnings").len())
        .sum();
    assert_eq!(report["summary"]["warnings"], json!(warnings));
    for object in report["objects"].as_array().expect("objects") {
        assert_eq!(
            keys(object),
            set(&[
                "file",
                "document",
                "item",
                "helmSource",
                "line",
                "apiVersion",
                "kind",
                "namespace",
                "name",
                "verdict",
                "warnings",
                "denials",
                "auditAnnotations",
                "patch",
                "patchOperations",
            ])
        );
    }
    let job = &report["objects"][0];
    assert_eq!(job["verdict"], "mutated");
    assert_eq!(job["patchOperations"], json!({"scratch_volume": 2}));
    assert_eq!(job["patch"][0]["path"], "/spec/template/spec/volumes/-");
}

#[test]
fn output_is_not_coloured_when_not_a_terminal() {
    let o = run(&["-f", DENIED], None);
    assert!(!stdout(&o).contains('\x1b'));
}

// One policy, two front ends.

/// The fake API both front ends ask: the workloads, Service and namespace of the fixtures.
fn fixture_cluster() -> MemoryCluster {
    let mut cluster = MemoryCluster::default();
    cluster
        .namespaces
        .insert("earthly-ci".to_owned(), Default::default());
    cluster
        .namespaces
        .insert("ci".to_owned(), Default::default());
    for name in fixture_names() {
        let review: Value = serde_json::from_slice(&fixture(&name)).expect("fixture");
        let object = &review["request"]["object"];
        let kind = object["kind"].as_str().unwrap_or_default();
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        if kind == "Service" {
            cluster
                .services
                .push(serde_json::from_value(object.clone()).expect("service"));
        } else if let Some(kind) = WorkloadKind::parse(kind) {
            cluster.workloads.push(Workload {
                kind,
                namespace: namespace.to_owned(),
                name: object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                replicas: object["spec"]["replicas"].as_i64().map(|r| r as i32),
                selector: serde_json::from_value(object["spec"]["selector"].clone()).ok(),
                template: serde_json::from_value(object["spec"]["template"].clone())
                    .expect("template"),
            });
        }
    }
    cluster
}

/// A server whose fake API is [`fixture_cluster`].
async fn fixture_server() -> TestServer {
    TestServer::start_with(Options {
        cluster: Arc::new(fixture_cluster()),
        ..Options::default()
    })
    .await
}

/// The fixture's object, namespace, operation, old object and subresource, as `check` takes
/// them.
struct Request {
    object: Value,
    old_object: Option<Value>,
    namespace: Option<String>,
    operation: Operation,
    subresource: Option<Subresource>,
}

fn request_of(body: &[u8]) -> Request {
    let review: Value = serde_json::from_slice(body).expect("fixture");
    let r = &review["request"];
    Request {
        object: r["object"].clone(),
        old_object: Some(r["oldObject"].clone()).filter(|v| !v.is_null()),
        namespace: r["namespace"].as_str().map(str::to_owned),
        operation: serde_json::from_value(r["operation"].clone()).expect("operation"),
        subresource: r["subResource"].as_str().map(|name| Subresource {
            resource: GroupVersionResource::gvr(
                r["resource"]["group"].as_str().unwrap_or_default(),
                r["resource"]["version"].as_str().unwrap_or_default(),
                r["resource"]["resource"].as_str().unwrap_or_default(),
            ),
            name: name.to_owned(),
        }),
    }
}

/// What must be identical: everything in the response but the uid.
fn comparable(answer: &Value) -> Value {
    let mut r = response(answer).clone();
    r.as_object_mut().expect("response").remove("uid");
    r
}

#[tokio::test]
async fn server_and_check_give_the_same_answer_for_every_fixture() {
    let cluster = fixture_cluster();
    let server = fixture_server().await;
    let policy = Policy::new(Config::default()).expect("policy");
    let routes = [
        ("/mutate", Action::Mutate, None),
        ("/mutate/enforce", Action::Mutate, Some(Mode::Enforce)),
        ("/mutate/warn", Action::Mutate, Some(Mode::Warn)),
        ("/mutate/audit", Action::Mutate, Some(Mode::Audit)),
        ("/validate", Action::Validate, None),
        ("/validate/enforce", Action::Validate, Some(Mode::Enforce)),
        ("/validate/warn", Action::Validate, Some(Mode::Warn)),
        ("/validate/audit", Action::Validate, Some(Mode::Audit)),
    ];
    let mut compared = 0;
    for name in fixture_names() {
        let body = fixture(&name);
        let req = request_of(&body);
        let submission = Submission {
            object: &req.object,
            namespace: req.namespace.as_deref(),
            operation: req.operation.clone(),
            old_object: req.old_object.as_ref(),
            subresource: req.subresource.clone(),
        };
        for (path, action, mode) in routes {
            let from_server = server.review(path, body.clone()).await;
            let reviewed = review_object(&policy, &cluster, Route { action, mode }, &submission)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let from_check: Value =
                serde_json::from_slice(&reviewed.to_json().expect("json")).expect("json");
            assert_eq!(
                comparable(&from_check),
                comparable(&from_server),
                "{name} {path}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, fixture_names().len() * routes.len());
    server.stop().await;
}

/// The fixture's object as `check` input, after its Namespace, so lookups of the namespace
/// find what the server's fake API holds (`fixture_cluster`).
fn with_its_namespace(req: &Request) -> Vec<earthly_webhook::check::input::Document> {
    let namespace = req.namespace.as_deref().expect("namespaced fixture");
    let input = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n---\n{}",
        req.object
    );
    parse_documents("fixture", &input).expect("object reads")
}

/// The check pipeline on a pod (mutate, then validate the mutated pod) says what the server
/// says at `/mutate` and then at `/validate` for the patched pod.
#[tokio::test]
async fn check_pipeline_answers_pods_like_the_server() {
    let server = fixture_server().await;
    let policy = Policy::new(Config::default()).expect("policy");
    for name in fixture_names()
        .into_iter()
        .filter(|n| n.starts_with("pod-"))
    {
        let body = fixture(&name);
        let mutated = server.review("/mutate", body.clone()).await;
        let (patched, _) = patched_pod(&body, &mutated);
        let validated = server
            .review("/validate", common::with_object(&body, patched))
            .await;
        let strings = |answer: &Value| -> Vec<String> {
            serde_json::from_value(response(answer)["warnings"].clone()).unwrap_or_default()
        };
        let mut warnings = strings(&mutated);
        warnings.extend(strings(&validated));

        let docs = with_its_namespace(&request_of(&body));
        let report = check_documents(&policy, docs, &CheckOptions::default()).await;
        let checked = &report.objects[1];
        assert_eq!(
            checked.patch,
            patch_of(&mutated).unwrap_or_default(),
            "{name}"
        );
        assert_eq!(checked.warnings, warnings, "{name}");
        assert_eq!(
            checked.verdict != Outcome::Denied,
            response(&validated)["allowed"] == json!(true),
            "{name}"
        );
    }
    server.stop().await;
}

/// A workload's template is mutated exactly as the pod its controller created was: the Job
/// and Deployment fixtures against the pods the job and replicaset controllers sent.
#[tokio::test]
async fn template_patches_match_the_patches_of_the_pods_controllers_created() {
    let server = fixture_server().await;
    let policy = Policy::new(Config::default()).expect("policy");
    for (workload, pod) in [
        (
            "job-create-earthly-all-in-one-dryrun.json",
            "pod-create-earthly-all-in-one-from-job.json",
        ),
        (
            "deployment-create-buildkitd-one-replica.json",
            "pod-create-buildkitd-from-replicaset.json",
        ),
    ] {
        let from_server = server.review("/mutate", fixture(pod)).await;
        let docs = with_its_namespace(&request_of(&fixture(workload)));
        let report = check_documents(&policy, docs, &CheckOptions::default()).await;
        let checked = &report.objects[1];
        let unrebased: Vec<Value> = checked
            .patch
            .0
            .iter()
            .map(|op| {
                let mut v = serde_json::to_value(op).expect("op");
                let path = v["path"]
                    .as_str()
                    .expect("path")
                    .replacen("/spec/template", "", 1);
                v["path"] = json!(path);
                v
            })
            .collect();
        let server_ops: Vec<Value> = patch_of(&from_server)
            .map(|p| {
                p.0.iter()
                    .map(|op| serde_json::to_value(op).expect("op"))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(unrebased, server_ops, "{workload}");
        let server_warnings: Vec<String> =
            serde_json::from_value(response(&from_server)["warnings"].clone()).unwrap_or_default();
        assert!(
            server_warnings.iter().all(|w| checked.warnings.contains(w)),
            "{workload}: {:?} vs {server_warnings:?}",
            checked.warnings
        );
    }
    server.stop().await;
}

// --- `check` reads manifests as kubectl does (issue 12). Each input below was misread before:
// the comment says how.

const KUBECTL_READS: &str = "tests/data/manifests/kubectl-reads";

fn kubectl_reads(file: &str) -> String {
    format!("{KUBECTL_READS}/{file}")
}

/// `-o yaml` of one file, read back as kubectl reads it.
fn yaml_output_of(file: &str) -> (Output, Value) {
    let o = run(&["-f", &kubectl_reads(file), "-o", "yaml"], None);
    let mut docs =
        earthly_webhook::check::load::load(&stdout(&o)).expect("the output is YAML kubectl reads");
    assert_eq!(docs.len(), 1, "{}", stdout(&o));
    (o, docs.remove(0).value)
}

#[test]
fn octal_default_mode_is_written_back_as_the_number_kubectl_submits() {
    // Was: `defaultMode: "0755"`, a string the apiserver refuses.
    let (o, job) = yaml_output_of("octal-default-mode.yaml");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("\n          defaultMode: 493\n"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        job.pointer("/spec/template/spec/volumes/0/configMap/defaultMode"),
        Some(&json!(493))
    );
}

#[test]
fn yaml_1_1_booleans_are_booleans() {
    // Was: denied, "privileged: invalid type: string \"yes\", expected a boolean".
    let o = run(
        &["-f", &kubectl_reads("yes-booleans.yaml"), "-o", "json"],
        None,
    );
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let report: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(report["objects"][0]["verdict"], "allowed");
    assert_eq!(report["objects"][0]["denials"], json!([]));
}

#[test]
fn merge_keys_are_merged_before_judging() {
    // Was: the second container judged without the merged fields (no image, so no role), and a
    // literal "<<" key written to the output.
    let (o, pod) = yaml_output_of("merge-keys.yaml");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stdout(&o).contains("<<"), "{}", stdout(&o));
    let second = &pod["spec"]["containers"][1];
    assert_eq!(second["name"], "earthly-b");
    assert_eq!(second["image"], "earthly/earthly:v0.8.15");
    assert_eq!(second["securityContext"], json!({"privileged": true}));
    assert_eq!(second["volumeMounts"][0]["name"], "scratch-b");
}

#[test]
fn json_with_surrogate_pair_escapes_is_read_as_json() {
    // Was: "found invalid Unicode character escape code" (the YAML parser read the JSON).
    let (o, pod) = yaml_output_of("surrogate-escapes.json");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        pod["metadata"]["annotations"]["ci.example.com/badge"],
        "\u{1F680} build"
    );
}

#[test]
fn a_get_dump_being_deleted_is_judged_as_the_new_object_it_becomes() {
    // Was: allowed, the dump's deletionTimestamp exempting three buildkitd replicas.
    let o = run(
        &[
            "-f",
            &kubectl_reads("get-dump-being-deleted.yaml"),
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let report: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let denial = report["objects"][0]["denials"][0]
        .as_str()
        .expect("a denial");
    assert!(denial.contains("asks for 3 replicas"), "{denial}");
}

#[test]
fn server_set_fields_are_not_written_back() {
    let o = run(
        &[
            "-f",
            &kubectl_reads("get-dump-being-deleted.yaml"),
            "-o",
            "yaml",
            "--mode",
            "warn",
        ],
        None,
    );
    let text = stdout(&o);
    for field in [
        "deletionTimestamp",
        "resourceVersion",
        "uid:",
        "managedFields",
        "status:",
    ] {
        assert!(!text.contains(field), "{field} in\n{text}");
    }
    assert!(text.contains("finalizers:"), "{text}");
}

#[test]
fn an_object_that_is_not_its_kind_is_an_input_error() {
    // Was: a denial (exit 1) of a Pod kubectl would not even send.
    let file =
        "tests/data/manifests/realworld/jenkins-macos-cross-compiler__pod-template-verbatim.yaml";
    let o = run(&["-f", file], None);
    assert_eq!(code(&o), 2);
    assert_eq!(
        stderr(&o),
        format!(
            "error: {file} document 1: Pod macos-cross-compiler-agent: cannot be read as a v1 Pod: spec.containers[0].env[1].value: invalid type: boolean `true`, expected a string\n"
        )
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn invalid_yaml_from_the_docs_is_an_input_error_naming_the_line() {
    let file = "tests/data/manifests/realworld/earthly-docs__self-hosted-satellite-pod.yaml";
    let o = run(&["-f", file], None);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).starts_with(&format!("error: {file} document 1: ")),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(" at line 14 column 4"),
        "{}",
        stderr(&o)
    );
}

// --- `check` in CI systems (issue 15): SARIF for code scanning, JUnit for test reports.

const CI_FORMATS: &str = "tests/data/manifests/ci-formats";

/// The 1-based line of the first line of `file` that contains `text`.
fn line_of(file: &str, text: &str) -> u64 {
    let body = std::fs::read_to_string(root().join(file)).expect("read");
    let index = body
        .lines()
        .position(|l| l.contains(text))
        .expect("text in file");
    u64::try_from(index + 1).expect("small")
}

#[test]
fn sarif_output_is_valid_sarif_2_1_0_with_a_result_per_finding_at_its_line() {
    let o = run(&["-f", CI_FORMATS, "-o", "sarif"], None);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let log: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let mut schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/data/sarif/sarif-2.1.0-rtm.5.json"))
            .expect("schema"),
    )
    .expect("schema JSON");
    // The schema's one known defect: the `language` properties' pattern has a stray `]`, which
    // an ECMAScript regex refuses, so the validator would not compile the schema. The output has
    // no `language`; those two patterns alone are dropped.
    fn drop_bad_patterns(v: &mut Value) -> usize {
        const BAD: &str = "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$";
        match v {
            Value::Object(m) => {
                let here = usize::from(m.get("pattern") == Some(&json!(BAD)));
                if here == 1 {
                    m.remove("pattern");
                }
                here + m.values_mut().map(drop_bad_patterns).sum::<usize>()
            }
            Value::Array(a) => a.iter_mut().map(drop_bad_patterns).sum(),
            _ => 0,
        }
    }
    assert_eq!(drop_bad_patterns(&mut schema), 2);
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&log)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    let results = run["results"].as_array().expect("results");
    let found: BTreeSet<(String, String, String, u64)> = results
        .iter()
        .map(|r| {
            let index =
                usize::try_from(r["ruleIndex"].as_u64().expect("ruleIndex")).expect("index");
            assert_eq!(
                rules[index]["id"], r["ruleId"],
                "ruleIndex points at its rule"
            );
            let location = &r["locations"][0]["physicalLocation"];
            (
                r["ruleId"].as_str().expect("id").to_owned(),
                r["level"].as_str().expect("level").to_owned(),
                location["artifactLocation"]["uri"]
                    .as_str()
                    .expect("uri")
                    .to_owned(),
                location["region"]["startLine"].as_u64().expect("line"),
            )
        })
        .collect();
    let tls = format!("{CI_FORMATS}/buildkitd-tls-off.yaml");
    let three = format!("{CI_FORMATS}/buildkitd-three-replicas.yaml");
    let job = format!("{CI_FORMATS}/runner-job.yaml");
    let expected: BTreeSet<(String, String, String, u64)> = [
        ("buildkitd-tls-off", "warning", &tls, line_of(&tls, "env:")),
        (
            "buildkitd-replicas",
            "error",
            &three,
            line_of(&three, "  replicas: 3"),
        ),
        ("privileged", "note", &job, line_of(&job, "- name: earthly")),
        (
            "scratch_volume",
            "note",
            &job,
            line_of(&job, "- name: earthly"),
        ),
    ]
    .into_iter()
    .map(|(id, level, file, line)| (id.to_owned(), level.to_owned(), file.clone(), line))
    .collect();
    assert_eq!(found, expected);
}

#[test]
fn sarif_levels_follow_the_mode() {
    let file = format!("{CI_FORMATS}/buildkitd-three-replicas.yaml");
    for (mode, level, status) in [
        ("enforce", "error", 1),
        ("warn", "warning", 0),
        ("audit", "note", 0),
    ] {
        let o = run(&["-f", &file, "-o", "sarif", "--mode", mode], None);
        assert_eq!(code(&o), status, "{mode}");
        let log: Value = serde_json::from_slice(&o.stdout).expect("JSON");
        let results = log["runs"][0]["results"].as_array().expect("results");
        assert_eq!(results.len(), 1, "{mode}: {results:#?}");
        assert_eq!(results[0]["ruleId"], "buildkitd-replicas", "{mode}");
        assert_eq!(results[0]["level"], level, "{mode}");
    }
}

#[test]
fn junit_output_has_a_case_per_object_and_a_failure_per_denied_one() {
    let o = run(&["-f", CI_FORMATS, "-o", "junit"], None);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let xml = stdout(&o);
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"earthly-webhook check\" tests=\"3\" failures=\"1\" errors=\"0\""), "{xml}");
    assert_eq!(xml.matches("<testsuite ").count(), 3, "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    assert!(xml.contains("type=\"buildkitd-replicas\""), "{xml}");
    assert!(
        xml.contains("<system-out>warning: [buildkitd-tls-off] "),
        "{xml}"
    );
}

#[test]
fn the_yaml_and_json_forms_of_the_apis_fixtures_read_the_same() {
    for kind in [
        "core.v1.Pod",
        "apps.v1.Deployment",
        "batch.v1.CronJob",
        "core.v1.Service",
    ] {
        let read = |ext: &str| {
            let file = root().join(format!("tests/data/k8s-api-testdata/{kind}.{ext}"));
            let text = std::fs::read_to_string(&file).expect("fixture");
            let docs = parse_documents(&file.display().to_string(), &text).expect("reads");
            docs[0].objects[0].value.clone()
        };
        let (yaml, json) = (read("yaml"), read("json"));
        assert_eq!(yaml, json, "{kind}");
        assert!(yaml.get("status").is_none(), "{kind}: status is cleared");
    }
}

#[test]
fn every_real_world_manifest_reads_and_its_yaml_output_reads_back_to_itself() {
    let dir = root().join("tests/data/manifests/realworld");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 16);
    for path in files {
        let file = path
            .strip_prefix(root())
            .expect("under root")
            .display()
            .to_string();
        let first = run(&["-f", &file, "-o", "yaml"], None);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("earthly-docs__") || name.ends_with("pod-template-verbatim.yaml") {
            assert_eq!(
                code(&first),
                2,
                "{file}: an input error\n{}",
                stderr(&first)
            );
            continue;
        }
        assert_ne!(code(&first), 2, "{file}: {}", stderr(&first));
        // Read back as kubectl reads it and written again, the output is unchanged: the
        // objects it holds are the ones `check` judged.
        let again = run(
            &["-f", "-", "-o", "yaml", "--mode", "audit"],
            Some(&first.stdout),
        );
        assert_eq!(code(&again), 0, "{file}: {}", stderr(&again));
        assert_eq!(stdout(&again), stdout(&first), "{file}");
    }
}

#[test]
fn rolling_update_over_a_buildkitd_claim_is_warned_at_the_strategy() {
    let file = "tests/data/manifests/rollout/buildkitd-pvc.yaml";
    let o = run(&["-f", file, "-o", "sarif"], None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let log: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("sarif");
    let results: Vec<(String, String, u64)> = log["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["ruleId"] == "buildkitd-rollout-shared-cache")
        .map(|r| {
            (
                r["message"]["text"].as_str().expect("text").to_owned(),
                r["level"].as_str().expect("level").to_owned(),
                r["locations"][0]["physicalLocation"]["region"]["startLine"]
                    .as_u64()
                    .expect("line"),
            )
        })
        .collect();
    assert_eq!(results.len(), 1, "{results:?}");
    let (text, level, line) = &results[0];
    assert!(
        text.starts_with(
            "Deployment ci/buildkitd: container buildkitd keeps its cache on PersistentVolumeClaim buildkitd-cache"
        ),
        "{text}"
    );
    assert_eq!(level, "warning");
    // No strategy in the file: the nearest ancestor of /spec/strategy, `spec:`.
    assert_eq!(*line, 8);
}

#[test]
fn a_replication_controller_running_several_buildkitd_is_denied_with_its_template_warnings() {
    let o = run(
        &[
            "-f",
            "tests/data/manifests/replication/buildkitd-three-replicas.yaml",
        ],
        None,
    );
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains(
            "denied: earthly/buildkitd does not support multi-node setups: \
             ReplicationController ci/buildkitd asks for 3 replicas. Set replicas: 1"
        ),
        "{out}"
    );
    assert!(
        out.contains("ReplicationController ci/buildkitd: container buildkitd serves buildkit over TCP without TLS"),
        "{out}"
    );
}
