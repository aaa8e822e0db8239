//! What the webhook answers to the AdmissionReview bodies a kube-apiserver sent, through the
//! router in-process (`tower::ServiceExt::oneshot`): transport is `tests/server.rs`'s.

mod common;

use std::sync::Arc;

use common::{App, Options, fixture, fixture_names, patch_of, patched_pod, response, with_object};
use earthly_webhook::cluster::MemoryCluster;
use hyper::StatusCode;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

const ALL_IN_ONE: &str = "pod-create-earthly-all-in-one-from-job.json";
const BUILDKITD: &str = "pod-create-buildkitd-from-replicaset.json";
const REMOTE_CLIENT: &str = "pod-create-earthly-remote-client-from-job.json";
const UNRELATED: &str = "pod-create-unrelated-multicontainer.json";
const UNRELATED_DRY_RUN: &str = "pod-create-unrelated-multicontainer-dryrun.json";

fn uid_of(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).expect("fixture");
    v["request"]["uid"].as_str().expect("uid").to_owned()
}

fn container<'a>(pod: &'a Pod, name: &str) -> &'a k8s_openapi::api::core::v1::Container {
    pod.spec
        .as_ref()
        .expect("spec")
        .containers
        .iter()
        .find(|c| c.name == name)
        .expect("container")
}

fn assert_privileged_with_scratch(pod: &Pod, name: &str) {
    let c = container(pod, name);
    assert_eq!(
        c.security_context.as_ref().and_then(|s| s.privileged),
        Some(true),
        "{name} privileged"
    );
    let mount = c
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|m| m.mount_path == "/tmp/earthly")
        .expect("scratch mount at /tmp/earthly");
    let volume = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == mount.name))
        .expect("scratch volume exists");
    assert!(volume.empty_dir.is_some(), "scratch volume is an emptyDir");
}

#[tokio::test]
async fn all_in_one_runner_gets_a_scratch_volume() {
    let server = App::start().await;
    let body = fixture(ALL_IN_ONE);
    let answer = server.review("/mutate?timeout=10s", body.clone()).await;
    let r = response(&answer);
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(r["uid"], json!(uid_of(&body)));
    assert_eq!(r["allowed"], json!(true));
    assert_eq!(r["patchType"], json!("JSONPatch"));
    let (_, pod) = patched_pod(&body, &answer);
    assert_privileged_with_scratch(&pod, "earthly");
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .expect("volumes");
    assert_eq!(volumes.len(), 3, "workspace, token and scratch");
    assert_eq!(volumes[2].name, "earthly-tmp");
    assert_eq!(
        r["warnings"],
        json!(["mounted scratch volume earthly-tmp at /tmp/earthly in container earthly"])
    );
    server.stop().await;
}

#[tokio::test]
async fn unprivileged_all_in_one_runner_is_made_privileged() {
    let server = App::start().await;
    let body = fixture(ALL_IN_ONE);
    let mut review: Value = serde_json::from_slice(&body).expect("fixture");
    let c = &mut review["request"]["object"]["spec"]["containers"][0];
    c.as_object_mut()
        .expect("container")
        .remove("securityContext");
    let body = serde_json::to_vec(&review).expect("json");
    let answer = server.review("/mutate", body.clone()).await;
    let (_, pod) = patched_pod(&body, &answer);
    assert_privileged_with_scratch(&pod, "earthly");
    let warnings = response(&answer)["warnings"]
        .as_array()
        .expect("warnings")
        .clone();
    assert_eq!(
        warnings[0],
        json!(
            "set privileged on container earthly: the all-in-one Earthly runner cannot run unprivileged"
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn buildkitd_pod_ends_privileged_with_scratch() {
    let server = App::start().await;
    let body = fixture(BUILDKITD);
    let answer = server.review("/mutate?timeout=10s", body.clone()).await;
    assert_eq!(response(&answer)["uid"], json!(uid_of(&body)));
    assert_eq!(response(&answer)["allowed"], json!(true));
    // The captured pod already asks for both, so nothing needs changing.
    assert!(patch_of(&answer).is_none());
    let (_, pod) = patched_pod(&body, &answer);
    assert_privileged_with_scratch(&pod, "buildkitd");
    server.stop().await;
}

#[tokio::test]
async fn stripped_buildkitd_pod_is_completed() {
    let server = App::start().await;
    let body = fixture(BUILDKITD);
    let mut review: Value = serde_json::from_slice(&body).expect("fixture");
    let spec = &mut review["request"]["object"]["spec"];
    spec["volumes"] = json!(null);
    let c = spec["containers"][0].as_object_mut().expect("container");
    c.remove("securityContext");
    c.remove("volumeMounts");
    let body = serde_json::to_vec(&review).expect("json");
    let answer = server.review("/mutate", body.clone()).await;
    let (_, pod) = patched_pod(&body, &answer);
    assert_privileged_with_scratch(&pod, "buildkitd");
    server.stop().await;
}

#[tokio::test]
async fn remote_client_and_unrelated_pods_get_no_patch() {
    let server = App::start().await;
    for name in [REMOTE_CLIENT, UNRELATED, UNRELATED_DRY_RUN] {
        let body = fixture(name);
        let answer = server.review("/mutate?timeout=10s", body.clone()).await;
        let r = response(&answer);
        assert_eq!(r["uid"], json!(uid_of(&body)), "{name}");
        assert_eq!(r["allowed"], json!(true), "{name}");
        assert!(r.get("patch").is_none(), "{name} got a patch");
        assert!(r.get("warnings").is_none(), "{name} got warnings");
    }
    server.stop().await;
}

#[tokio::test]
async fn dry_run_is_answered_like_the_real_request() {
    let server = App::start().await;
    for path in ["/mutate", "/validate"] {
        let real = server.review(path, fixture(UNRELATED)).await;
        let dry = server.review(path, fixture(UNRELATED_DRY_RUN)).await;
        let mut real_r = response(&real).clone();
        let mut dry_r = response(&dry).clone();
        real_r["uid"] = json!("");
        dry_r["uid"] = json!("");
        assert_eq!(real_r, dry_r, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn patched_pod_sent_again_gets_an_empty_patch() {
    let server = App::start().await;
    for name in [ALL_IN_ONE, BUILDKITD] {
        let body = fixture(name);
        let first = server.review("/mutate", body.clone()).await;
        let (object, _) = patched_pod(&body, &first);
        let second = server.review("/mutate", with_object(&body, object)).await;
        assert!(patch_of(&second).is_none(), "{name}: second pass patched");
        assert!(response(&second).get("warnings").is_none(), "{name}");
    }
    server.stop().await;
}

#[tokio::test]
async fn every_fixture_gets_its_uid_back_at_both_endpoints() {
    let server = App::start().await;
    for name in fixture_names() {
        let body = fixture(&name);
        for path in ["/mutate?timeout=10s", "/validate?timeout=10s"] {
            let answer = server.review(path, body.clone()).await;
            assert_eq!(
                response(&answer)["uid"],
                json!(uid_of(&body)),
                "{name} {path}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn validate_warns_about_a_runner_the_mutator_has_not_seen() {
    let server = App::start().await;
    let answer = server.review("/validate", fixture(ALL_IN_ONE)).await;
    let r = response(&answer);
    assert_eq!(r["allowed"], json!(true));
    assert_eq!(
        r["warnings"],
        json!([
            "Pod earthly-ci/earthly-wp5m2: container earthly has no scratch volume at /tmp/earthly \
(spec.containers[0].volumeMounts); mount an emptyDir there, or install the earthly-webhook mutating webhook"
        ])
    );
    server.stop().await;
}

#[tokio::test]
async fn validate_warns_about_buildkitd_without_tls() {
    let server = App::start().await;
    let answer = server.review("/validate", fixture(BUILDKITD)).await;
    let warnings = response(&answer)["warnings"]
        .as_array()
        .expect("warnings")
        .clone();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0]
            .as_str()
            .expect("string")
            .starts_with("Pod earthly-ci/earthly-buildkitd-7f5c54df9c-2pvh2: container buildkitd serves buildkit over TCP without TLS")
    );
    server.stop().await;
}

async fn expect_400(server: &App, body: &[u8], message: &str) {
    let (status, text) = server.post("/mutate", body.to_vec()).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&text)
    );
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains(message),
        "{text:?} should contain {message:?}"
    );
}

#[tokio::test]
async fn bad_bodies_get_clear_answers_and_the_server_keeps_serving() {
    let server = App::start().await;
    expect_400(&server, b"", "request body is empty").await;
    expect_400(&server, b"{not json", "request body is not JSON").await;
    expect_400(
        &server,
        br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}"#,
        r#"not an admission.k8s.io/v1 AdmissionReview (found apiVersion "v1", kind "Pod")"#,
    )
    .await;
    expect_400(
        &server,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        "AdmissionReview has no request",
    )
    .await;
    expect_400(&server, b"[1,2,3]", "not JSON").await;

    // 5 MiB: refused before it is read.
    let big = vec![b' '; 5 * 1024 * 1024];
    let (status, _) = server.post("/mutate", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Still serving.
    let answer = server.review("/mutate", fixture(ALL_IN_ONE)).await;
    assert_eq!(response(&answer)["allowed"], json!(true));
    server.stop().await;
}

#[tokio::test]
async fn unreadable_pod_is_refused_with_its_uid_and_the_field() {
    let server = App::start().await;
    let body = fixture(ALL_IN_ONE);
    let mut review: Value = serde_json::from_slice(&body).expect("fixture");
    review["request"]["object"]["spec"]["containers"][0]["env"] = json!("NO_DOCKER=1");
    let answer = server
        .review("/mutate", serde_json::to_vec(&review).expect("json"))
        .await;
    let r = response(&answer);
    assert_eq!(r["uid"], json!(uid_of(&body)));
    assert_eq!(r["allowed"], json!(false));
    let message = r["status"]["message"].as_str().expect("message");
    assert!(
        message.starts_with(
            "cannot read Pod earthly-ci/earthly-wp5m2: spec.containers[0].env: invalid type"
        ),
        "{message}"
    );
    server.stop().await;
}

#[tokio::test]
async fn review_with_unreadable_request_keeps_the_uid() {
    let server = App::start().await;
    let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"abc-123","operation":42}}"#;
    let answer = server.review("/validate", body.to_vec()).await;
    let r = response(&answer);
    assert_eq!(r["uid"], json!("abc-123"));
    assert_eq!(r["allowed"], json!(false));
    assert!(
        r["status"]["message"]
            .as_str()
            .expect("message")
            .starts_with("cannot read AdmissionReview:")
    );
    server.stop().await;
}

#[tokio::test]
async fn pod_without_containers_is_answered() {
    let server = App::start().await;
    let body = fixture(UNRELATED);
    let mut review: Value = serde_json::from_slice(&body).expect("fixture");
    review["request"]["object"]["spec"]["containers"] = json!([]);
    review["request"]["object"]["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("initContainers");
    let answer = server
        .review("/mutate", serde_json::to_vec(&review).expect("json"))
        .await;
    assert_eq!(response(&answer)["allowed"], json!(true));
    assert!(patch_of(&answer).is_none());

    // No containers key at all: nothing of ours to change; the apiserver's own validation
    // refuses the pod after admission.
    review["request"]["object"]["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("containers");
    let answer = server
        .review("/mutate", serde_json::to_vec(&review).expect("json"))
        .await;
    let r = response(&answer);
    assert_eq!(r["allowed"], json!(true));
    assert_eq!(r["uid"], json!(uid_of(&body)));
    assert!(patch_of(&answer).is_none());
    server.stop().await;
}

#[tokio::test]
async fn mutation_happens_on_create_only() {
    let server = App::start().await;
    let body = fixture(ALL_IN_ONE);
    let mut review: Value = serde_json::from_slice(&body).expect("fixture");
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["oldObject"] = review["request"]["object"].clone();
    let answer = server
        .review("/mutate", serde_json::to_vec(&review).expect("json"))
        .await;
    assert_eq!(response(&answer)["allowed"], json!(true));
    assert!(patch_of(&answer).is_none());
    server.stop().await;
}

#[tokio::test]
async fn unknown_mode_in_the_path_is_not_found() {
    let server = App::start().await;
    let (status, text) = server.post("/validate/strict", fixture(ALL_IN_ONE)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&text).contains("unknown policy mode \"strict\""));
    server.stop().await;
}

const DEPLOYMENT: &str = "deployment-create-buildkitd-one-replica.json";
const JOB: &str = "job-create-earthly-all-in-one-dryrun.json";

/// The warnings of an answer.
fn warnings(answer: &Value) -> Vec<String> {
    response(answer)["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn workload_template_footguns_reach_whoever_applies_the_workload() {
    // A cluster with no Service in front of the Deployment (without one, the lookup of the
    // Services in front of it would fail and `cluster.failureMode: deny` refuse it).
    let app = App::start_with(Options {
        cluster: Arc::new(MemoryCluster::default()),
        ..Options::default()
    })
    .await;
    // Earthly's own remote-buildkitd example: a Deployment serving buildkit over TCP, TLS off.
    let answer = app.review("/validate", fixture(DEPLOYMENT)).await;
    assert_eq!(response(&answer)["allowed"], true);
    let w = warnings(&answer);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("Deployment earthly-ci/earthly-buildkitd: container ")
            && w[0].contains("serves buildkit over TCP without TLS")
            && w[0].contains("(spec.template.spec.containers[0].env BUILDKIT_TLS_ENABLED=false)"),
        "{w:?}"
    );
}

#[tokio::test]
async fn job_and_cronjob_templates_are_judged_and_named() {
    let app = App::start().await;
    // The all-in-one runner Job: unprivileged in its template, which the mutating webhook fixes
    // in its pods, so nothing to say.
    let answer = app.review("/validate", fixture(JOB)).await;
    assert!(warnings(&answer).is_empty(), "{:?}", warnings(&answer));

    let mut review: Value = serde_json::from_slice(&fixture(JOB)).expect("fixture");
    let env = json!([{"name": "SRC_DIR", "value": "/src"}]);
    review["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["env"] = env;
    let job = review["request"]["object"].clone();
    let answer = app
        .review("/validate", serde_json::to_vec(&review).expect("json"))
        .await;
    let w = warnings(&answer);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("Job "), "{w:?}");
    assert!(w[0].contains("sets SRC_DIR"), "{w:?}");
    assert!(
        w[0].contains("(spec.template.spec.containers[0].env)"),
        "{w:?}"
    );

    // The same template in a CronJob is named at its own path.
    let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "ci"},
        "spec": {"schedule": "@daily", "jobTemplate": {"spec": job["spec"].clone()}}});
    review["request"]["kind"] = json!({"group": "batch", "version": "v1", "kind": "CronJob"});
    review["request"]["resource"] =
        json!({"group": "batch", "version": "v1", "resource": "cronjobs"});
    review["request"]["object"] = cron;
    let answer = app
        .review("/validate", serde_json::to_vec(&review).expect("json"))
        .await;
    let w = warnings(&answer);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("CronJob earthly-ci/nightly: container ")
            && w[0].contains("(spec.jobTemplate.spec.template.spec.containers[0].env)"),
        "{w:?}"
    );
}

/// The operation is checked after the decode (it is not part of the routing key): a pod DELETE
/// at /validate is admitted as it is, whatever its old object holds.
#[tokio::test]
async fn operations_no_line_judges_are_admitted_unread() {
    let app = App::start().await;
    let mut review: Value = serde_json::from_slice(&fixture(ALL_IN_ONE)).expect("fixture");
    let object = review["request"]["object"].take();
    review["request"]["operation"] = json!("DELETE");
    review["request"]["oldObject"] = object;
    review["request"]["oldObject"]["spec"]["containers"][0]["env"] = json!("not a list");
    let answer = app
        .review("/validate", serde_json::to_vec(&review).expect("json"))
        .await;
    assert_eq!(response(&answer)["allowed"], true, "{answer}");
    assert!(response(&answer).get("warnings").is_none(), "{answer}");
}

#[tokio::test]
async fn captured_buildkitd_deployment_joining_another_behind_its_service_is_denied() {
    // Earthly's remote-buildkitd Deployment as the apiserver sent it, in a namespace where the
    // Service it is meant for already fronts an older buildkitd StatefulSet.
    let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "earthly-buildkitd", "namespace": "earthly-ci"},
        "spec": {"selector": {"app": "earthly", "component": "buildkitd"}}}))
    .expect("service");
    let old: Pod = serde_json::from_value(json!({
        "metadata": {"name": "buildkitd-0", "namespace": "earthly-ci",
            "labels": {"app": "earthly", "component": "buildkitd"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                "name": "buildkitd", "uid": "u", "controller": true}]},
        "spec": {"containers": [{"name": "buildkitd", "image": "earthly/buildkitd:v0.7.23"}]},
        "status": {"phase": "Running"}}))
    .expect("pod");
    let app = App::start_with(Options {
        cluster: Arc::new(MemoryCluster {
            services: vec![service],
            pods: vec![old],
            ..MemoryCluster::default()
        }),
        ..Options::default()
    })
    .await;
    let answer = app.review("/validate", fixture(DEPLOYMENT)).await;
    let r = response(&answer);
    assert_eq!(r["allowed"], json!(false), "{answer}");
    let message = r["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "earthly/buildkitd does not support multi-node setups: Deployment \
             earthly-ci/earthly-buildkitd would be a second buildkitd behind Service \
             earthly-ci/earthly-buildkitd, next to StatefulSet earthly-ci/buildkitd."
        ),
        "{answer}"
    );
}
