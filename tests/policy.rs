//! The buildkitd rules, the policy modes and the cluster lookups, over real HTTPS with the
//! AdmissionReview bodies a kube-apiserver sent.

mod common;

use std::sync::Arc;

use common::{Options, TestServer, fixture, fixture_names, patch_of, response};
use earthly_webhook::cluster::{
    ClusterView, KubeCluster, MemoryCluster, Recording, Workload, WorkloadKind,
};
use earthly_webhook::config::Config;
use hyper::{Request, Response};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::client::Body;
use serde_json::{Value, json};

const DEPLOYMENT: &str = "deployment-create-buildkitd-one-replica.json";
const STATEFULSET: &str = "statefulset-create-buildkitd-two-replicas.json";
const DAEMONSET: &str = "daemonset-create-buildkitd.json";
const SCALE: &str = "scale-update-buildkitd-deployment-to-two.json";
const SERVICE: &str = "service-create-buildkitd-sticky.json";
const BUILDKITD_POD: &str = "pod-create-buildkitd-from-replicaset.json";
const ALL_IN_ONE: &str = "pod-create-earthly-all-in-one-from-job.json";

const STATEFULSET_DENIAL: &str = "earthly/buildkitd does not support multi-node setups: \
    StatefulSet earthly-ci/buildkitd-sts asks for 2 replicas. Set replicas: 1, or enable sticky \
    multi-instance mode and front it with a Service using sessionAffinity: ClientIP.";
const SCALE_DENIAL: &str = "earthly/buildkitd does not support multi-node setups: Deployment \
    earthly-ci/earthly-buildkitd is being scaled to 2 replicas. Scale it to 1 replica, or enable \
    sticky multi-instance mode and front it with a Service using sessionAffinity: ClientIP.";

/// The recording double, shared with the server under test.
fn recording(inner: MemoryCluster) -> Arc<Recording> {
    Arc::new(Recording::new(inner))
}

fn config(yaml: &str) -> Config {
    Config::from_yaml(yaml, "test").expect("config")
}

async fn server_with(config: Config, cluster: Arc<dyn ClusterView>) -> TestServer {
    TestServer::start_with(Options {
        config,
        cluster,
        ..Default::default()
    })
    .await
}

fn object_of(fixture_name: &str) -> Value {
    let review: Value = serde_json::from_slice(&fixture(fixture_name)).expect("fixture");
    review["request"]["object"].clone()
}

/// A fixture with `edit` applied to its review.
fn variant(fixture_name: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(&fixture(fixture_name)).expect("fixture");
    edit(&mut review);
    serde_json::to_vec(&review).expect("json")
}

/// The captured buildkitd Deployment as the API would return it, at 3 replicas (the Scale
/// fixture's old object).
fn captured_deployment() -> Deployment {
    let mut d: Deployment = serde_json::from_value(object_of(DEPLOYMENT)).expect("deployment");
    d.spec.replicas = Some(3);
    d
}

fn captured_workload() -> Workload {
    let d = captured_deployment();
    let spec = d.spec;
    Workload {
        kind: WorkloadKind::Deployment,
        namespace: "earthly-ci".to_owned(),
        name: "earthly-buildkitd".to_owned(),
        replicas: spec.replicas,
        selector: Some(spec.selector),
        template: spec.template,
    }
}

/// The pod the ReplicaSet created, as a pod list would return it.
fn running_buildkitd_pod() -> Pod {
    serde_json::from_value(object_of(BUILDKITD_POD)).expect("pod")
}

fn denial_message(answer: &Value) -> String {
    let r = response(answer);
    assert_eq!(r["allowed"], json!(false), "{answer}");
    assert_eq!(r["status"]["code"], json!(403));
    r["status"]["message"].as_str().expect("message").to_owned()
}

fn assert_allowed_quietly(answer: &Value) {
    let r = response(answer);
    assert_eq!(r["allowed"], json!(true), "{answer}");
    assert!(r.get("warnings").is_none(), "{answer}");
    assert!(r.get("auditAnnotations").is_none(), "{answer}");
}

#[tokio::test]
async fn buildkitd_deployment_with_one_replica_is_allowed_after_one_services_list() {
    let cluster = recording(MemoryCluster::default());
    let server = server_with(Config::default(), cluster.clone()).await;
    let answer = server
        .review("/validate?timeout=10s", fixture(DEPLOYMENT))
        .await;
    // Allowed, and the only thing said is the template's TLS footgun (tests/reviews.rs).
    let r = response(&answer);
    assert_eq!(r["allowed"], json!(true), "{answer}");
    let warnings = r["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{answer}");
    assert!(r.get("auditAnnotations").is_none(), "{answer}");
    // Whether another buildkitd already sits behind a Service in front of it: no Service, so
    // no pods are listed.
    assert_eq!(cluster.calls(), ["services earthly-ci"]);
    server.stop().await;
}

#[tokio::test]
async fn buildkitd_statefulset_with_two_replicas_is_denied_in_single_mode() {
    let cluster = recording(MemoryCluster::default());
    let server = server_with(Config::default(), cluster.clone()).await;
    let answer = server
        .review("/validate?timeout=10s", fixture(STATEFULSET))
        .await;
    assert_eq!(
        response(&answer)["uid"],
        json!("fde793c1-891b-471e-8ae9-eb7bd472758b")
    );
    assert_eq!(denial_message(&answer), STATEFULSET_DENIAL);
    assert_eq!(cluster.calls().len(), 0, "single mode needs no lookup");
    server.stop().await;
}

#[tokio::test]
async fn buildkitd_daemonset_is_denied() {
    let server = TestServer::start().await;
    let answer = server.review("/validate/enforce", fixture(DAEMONSET)).await;
    assert_eq!(
        denial_message(&answer),
        "earthly/buildkitd does not support multi-node setups: DaemonSet earthly-ci/buildkitd-ds \
         runs one buildkitd on every node. Use a Deployment with replicas: 1, or enable sticky \
         multi-instance mode and front it with a Service using sessionAffinity: ClientIP."
    );
    server.stop().await;
}

#[tokio::test]
async fn scaling_buildkitd_deployment_to_two_is_denied_with_a_fake_api() {
    let cluster = recording(MemoryCluster {
        workloads: vec![captured_workload()],
        ..Default::default()
    });
    let server = server_with(Config::default(), cluster.clone()).await;
    let answer = server.review("/validate?timeout=10s", fixture(SCALE)).await;
    assert_eq!(denial_message(&answer), SCALE_DENIAL);
    assert_eq!(cluster.calls().len(), 1, "one get of the Deployment");
    server.stop().await;
}

#[tokio::test]
async fn scaling_buildkitd_deployment_to_two_is_denied_through_the_kube_client() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let settings = Config::default().cluster;
    let cluster = Arc::new(KubeCluster::new(client, &settings));
    let api = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.expect("one lookup");
        let seen = (request.method().clone(), request.uri().to_string());
        let body = serde_json::to_vec(&captured_deployment()).expect("json");
        send.send_response(Response::new(Body::from(body)));
        seen
    });
    let server = server_with(Config::default(), cluster).await;
    let answer = server.review("/validate?timeout=10s", fixture(SCALE)).await;
    assert_eq!(denial_message(&answer), SCALE_DENIAL);
    let (method, uri) = api.await.expect("api task");
    assert_eq!(method, hyper::Method::GET);
    assert_eq!(
        uri,
        "/apis/apps/v1/namespaces/earthly-ci/deployments/earthly-buildkitd"
    );
    // The same scale again within the cache TTL is judged without asking the API (which no
    // longer answers at all).
    let again = server.review("/validate", fixture(SCALE)).await;
    assert_eq!(denial_message(&again), SCALE_DENIAL);
    server.stop().await;
}

#[tokio::test]
async fn sticky_service_is_allowed_in_sticky_mode_after_one_pod_list() {
    let cluster = recording(MemoryCluster::default());
    let server = server_with(config("buildkitd: {instances: sticky}"), cluster.clone()).await;
    let answer = server
        .review("/validate?timeout=10s", fixture(SERVICE))
        .await;
    assert_allowed_quietly(&answer);
    // The instances behind it must share their TLS configuration: its pods are listed once.
    assert_eq!(
        cluster.calls(),
        ["pods earthly-ci app=earthly,component=buildkitd"]
    );
    server.stop().await;
}

#[tokio::test]
async fn plain_service_in_front_of_buildkitd_is_denied_in_sticky_mode() {
    let cluster = recording(MemoryCluster {
        pods: vec![running_buildkitd_pod()],
        ..Default::default()
    });
    let server = server_with(config("buildkitd: {instances: sticky}"), cluster.clone()).await;
    let body = variant(SERVICE, |r| {
        let spec = r["request"]["object"]["spec"]
            .as_object_mut()
            .expect("spec");
        spec.insert("sessionAffinity".to_owned(), json!("None"));
        spec.remove("sessionAffinityConfig");
    });
    let answer = server.review("/validate", body).await;
    assert_eq!(
        denial_message(&answer),
        "earthly/buildkitd multi-instance mode needs sticky sessions: Service \
         earthly-ci/earthly-buildkitd selects buildkitd Pod \
         earthly-ci/earthly-buildkitd-7f5c54df9c-2pvh2 but has sessionAffinity: None. Set \
         sessionAffinity: ClientIP with sessionAffinityConfig.clientIP.timeoutSeconds of at \
         least 600, or change its selector so that it selects no buildkitd pods."
    );
    assert_eq!(cluster.calls().len(), 1, "one pod list");
    server.stop().await;
}

#[tokio::test]
async fn sticky_mode_allows_statefulset_behind_the_sticky_service() {
    let sticky: Service = serde_json::from_value(object_of(SERVICE)).expect("service");
    let mut sticky_for_sts = sticky.clone();
    if let Some(spec) = sticky_for_sts.spec.as_mut() {
        spec.selector = Some(
            [("app".to_owned(), "bk-sts".to_owned())]
                .into_iter()
                .collect(),
        );
    }
    let cluster = recording(MemoryCluster {
        services: vec![sticky, sticky_for_sts],
        ..Default::default()
    });
    let server = server_with(config("buildkitd: {instances: sticky}"), cluster.clone()).await;
    let answer = server.review("/validate", fixture(STATEFULSET)).await;
    assert_allowed_quietly(&answer);
    assert_eq!(cluster.calls().len(), 1, "one Service list");
    server.stop().await;
}

#[tokio::test]
async fn warn_path_admits_with_the_denial_as_a_warning() {
    let server = TestServer::start().await;
    let answer = server
        .review("/validate/warn?timeout=10s", fixture(STATEFULSET))
        .await;
    let r = response(&answer);
    assert_eq!(r["allowed"], json!(true));
    assert_eq!(r["warnings"], json!([STATEFULSET_DENIAL]));
    assert!(r.get("auditAnnotations").is_none());
    server.stop().await;
}

#[tokio::test]
async fn audit_path_admits_with_an_audit_annotation() {
    let server = TestServer::start().await;
    let answer = server
        .review("/validate/audit?timeout=10s", fixture(STATEFULSET))
        .await;
    let r = response(&answer);
    assert_eq!(r["allowed"], json!(true));
    assert!(r.get("warnings").is_none());
    assert_eq!(
        r["auditAnnotations"],
        json!({"buildkitd-replicas": STATEFULSET_DENIAL})
    );
    server.stop().await;
}

#[tokio::test]
async fn default_mode_from_the_config_applies_to_plain_validate() {
    let server = server_with(
        config("policy: {defaultMode: warn}"),
        Arc::new(MemoryCluster::default()),
    )
    .await;
    let answer = server.review("/validate", fixture(STATEFULSET)).await;
    assert_eq!(response(&answer)["allowed"], json!(true));
    assert_eq!(response(&answer)["warnings"], json!([STATEFULSET_DENIAL]));
    // The path's mode wins over the default.
    let answer = server
        .review("/validate/enforce", fixture(STATEFULSET))
        .await;
    assert_eq!(denial_message(&answer), STATEFULSET_DENIAL);
    server.stop().await;
}

#[tokio::test]
async fn failed_lookup_denies_in_deny_failure_mode() {
    // No API configured at all, as with `serve` on a laptop.
    let server = TestServer::start().await;
    let answer = server.review("/validate", fixture(SCALE)).await;
    assert_eq!(
        denial_message(&answer),
        "Deployment earthly-ci/earthly-buildkitd: cannot check for unsupported buildkitd setups: \
         the lookup of Deployment earthly-ci/earthly-buildkitd failed: no Kubernetes API is \
         configured. Retry once the webhook can reach the Kubernetes API (its \
         cluster.failureMode is deny)."
    );
    server.stop().await;
}

#[tokio::test]
async fn failed_lookup_admits_with_a_warning_in_allow_failure_mode() {
    let server = server_with(
        config("cluster: {failureMode: allow}"),
        Arc::new(earthly_webhook::cluster::NoCluster),
    )
    .await;
    let answer = server.review("/validate", fixture(SCALE)).await;
    let r = response(&answer);
    assert_eq!(r["allowed"], json!(true));
    assert_eq!(
        r["warnings"],
        json!([
            "Deployment earthly-ci/earthly-buildkitd: cannot check for unsupported buildkitd \
             setups: the lookup of Deployment earthly-ci/earthly-buildkitd failed: no Kubernetes \
             API is configured; admitted unchecked (the webhook's cluster.failureMode is allow)"
        ])
    );
    server.stop().await;
}

#[tokio::test]
async fn timed_out_kube_lookup_says_so() {
    let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let config = config("cluster: {lookupTimeoutMs: 100}");
    let cluster = Arc::new(KubeCluster::new(client, &config.cluster));
    let server = server_with(config, cluster).await;
    let answer = server.review("/validate", fixture(SCALE)).await;
    assert!(denial_message(&answer).contains(
        "the lookup of Deployment earthly-ci/earthly-buildkitd failed: the Kubernetes API \
             did not answer within 100 ms."
    ));
    server.stop().await;
}

fn labelled_namespace(level: &str) -> MemoryCluster {
    let labels = [(
        "pod-security.kubernetes.io/enforce".to_owned(),
        level.to_owned(),
    )]
    .into_iter()
    .collect();
    MemoryCluster {
        namespaces: [("earthly-ci".to_owned(), labels)].into_iter().collect(),
        ..Default::default()
    }
}

const PSA_DENIAL: &str = "Pod earthly-ci/earthly-wp5m2: container earthly (all-in-one Earthly \
    runner) must run privileged, but namespace earthly-ci enforces the baseline Pod Security \
    Standard (pod-security.kubernetes.io/enforce: baseline), so Pod Security Admission will \
    refuse the pod. Label the namespace pod-security.kubernetes.io/enforce: privileged, or run \
    Earthly in a namespace that allows privileged pods.";

#[tokio::test]
async fn privileged_runner_in_baseline_namespace_is_denied_at_mutate() {
    let cluster = recording(labelled_namespace("baseline"));
    let server = server_with(Config::default(), cluster.clone()).await;
    let answer = server
        .review("/mutate?timeout=10s", fixture(ALL_IN_ONE))
        .await;
    assert_eq!(denial_message(&answer), PSA_DENIAL);
    assert!(patch_of(&answer).is_none());
    assert_eq!(cluster.calls().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn privileged_runner_in_baseline_namespace_is_mutated_with_a_warning_in_warn_mode() {
    let server = server_with(Config::default(), Arc::new(labelled_namespace("baseline"))).await;
    let answer = server.review("/mutate/warn", fixture(ALL_IN_ONE)).await;
    let r = response(&answer);
    assert_eq!(r["allowed"], json!(true));
    assert!(patch_of(&answer).is_some());
    let warnings = r["warnings"].as_array().expect("warnings");
    assert!(warnings.contains(&json!(PSA_DENIAL)), "{warnings:?}");
    server.stop().await;
}

#[tokio::test]
async fn objects_that_are_not_buildkitd_are_never_looked_up() {
    let cluster = recording(MemoryCluster::default());
    let server = server_with(config("buildkitd: {instances: sticky}"), cluster.clone()).await;
    for name in [
        "pod-create-unrelated-multicontainer.json",
        "pod-create-unrelated-multicontainer-dryrun.json",
        "pod-create-earthly-remote-client-from-job.json",
        "job-create-earthly-all-in-one-dryrun.json",
        // Judged through its ReplicaSet's Deployment, like the remote client through its Job.
        BUILDKITD_POD,
    ] {
        for path in ["/validate", "/validate/warn", "/validate/audit"] {
            let answer = server.review(path, fixture(name)).await;
            assert_eq!(response(&answer)["allowed"], json!(true), "{name} {path}");
        }
    }
    assert_eq!(cluster.calls().len(), 0);
    server.stop().await;
}

#[tokio::test]
async fn every_fixture_is_answered_in_every_mode() {
    let server = server_with(
        Config::default(),
        Arc::new(MemoryCluster {
            workloads: vec![captured_workload()],
            ..Default::default()
        }),
    )
    .await;
    for name in fixture_names() {
        for path in ["/validate", "/validate/warn", "/validate/audit"] {
            let answer = server.review(path, fixture(&name)).await;
            let r = response(&answer);
            assert!(r["uid"].as_str().is_some_and(|u| !u.is_empty()), "{name}");
            if path != "/validate" {
                assert_eq!(r["allowed"], json!(true), "{name} {path}");
            }
        }
    }
    server.stop().await;
}
