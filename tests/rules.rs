//! The rules that need facts from the cluster, driven through the review with the recording
//! test double: what each rule looks up (and what it never looks up), what it decides from the
//! answers, and what a failed or slow lookup does in each failure mode.

use earthly_webhook::cluster::{
    ClusterView, LookupError, MemoryCluster, Recording, Workload, WorkloadKind,
};
use earthly_webhook::config::{Config, Mode};
use earthly_webhook::review::{Action, Policy, Reviewed, Route, review_body};
use earthly_webhook::rule_id::RuleId;
use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::{Value, json};
const NS: &str = "ci";

fn config(yaml: &str) -> Config {
    Config::from_yaml(yaml, "test").expect("config")
}

fn single() -> Config {
    Config::default()
}

fn sticky() -> Config {
    config("buildkitd: {instances: sticky}")
}

fn template(image: &str) -> Value {
    json!({"metadata": {"labels": {"app": "bk"}},
        "spec": {"containers": [{"name": "c", "image": image}]}})
}

fn deployment(replicas: i32, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bk", "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bk"}},
            "template": template(image)}})
}

fn bk_workload(replicas: i32) -> Workload {
    Workload {
        kind: WorkloadKind::Deployment,
        namespace: NS.to_owned(),
        name: "bk".to_owned(),
        replicas: Some(replicas),
        selector: None,
        template: serde_json::from_value(template("earthly/buildkitd")).expect("template"),
    }
}

fn service(name: &str, extra: Value) -> Service {
    let mut spec = json!({"selector": {"app": "bk"}});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": NS}, "spec": spec}))
        .expect("service")
}

fn sticky_extra() -> Value {
    json!({"sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}})
}

fn bare_pod(name: &str, image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "bk"}},
        "spec": {"containers": [{"name": "b", "image": image,
            "securityContext": {"privileged": true},
            "volumeMounts": [{"name": "t", "mountPath": "/tmp/earthly"}]}],
            "volumes": [{"name": "t", "emptyDir": {}}]}})
}

fn pod(v: Value) -> Pod {
    serde_json::from_value(v).expect("pod")
}

/// An AdmissionReview for `object` (and `old` on UPDATE).
fn request(
    group: &str,
    kind: &str,
    resource: (&str, &str),
    sub_resource: Option<&str>,
    operation: &str,
    object: Value,
    old: Option<Value>,
) -> Vec<u8> {
    let mut r = json!({"uid": "u-1", "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": resource.0, "version": "v1", "resource": resource.1},
        "name": object["metadata"]["name"], "namespace": NS, "operation": operation,
        "userInfo": {}, "object": object});
    if let Some(s) = sub_resource {
        r["subResource"] = json!(s);
    }
    if let Some(old) = old {
        r["oldObject"] = old;
    }
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview", "request": r}))
    .expect("json")
}

fn create_deployment(d: Value) -> Vec<u8> {
    request(
        "apps",
        "Deployment",
        ("apps", "deployments"),
        None,
        "CREATE",
        d,
        None,
    )
}

fn scale(from: i32, to: i32) -> Vec<u8> {
    let scale = |n: i32| {
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": "bk", "namespace": NS}, "spec": {"replicas": n}})
    };
    request(
        "autoscaling",
        "Scale",
        ("apps", "deployments"),
        Some("scale"),
        "UPDATE",
        scale(to),
        Some(scale(from)),
    )
}

fn create_service(s: &Service) -> Vec<u8> {
    let mut v = serde_json::to_value(s).expect("json");
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Service");
    request("", "Service", ("", "services"), None, "CREATE", v, None)
}

fn create_pod(p: Value) -> Vec<u8> {
    request("", "Pod", ("", "pods"), None, "CREATE", p, None)
}

async fn run(
    config: Config,
    cluster: &dyn ClusterView,
    action: Action,
    mode: Option<Mode>,
    body: &[u8],
) -> Reviewed {
    let policy = Policy::new(config).expect("policy");
    review_body(&policy, cluster, Route { action, mode }, body)
        .await
        .expect("review")
}

async fn validate(config: Config, cluster: &dyn ClusterView, body: &[u8]) -> Reviewed {
    run(config, cluster, Action::Validate, None, body).await
}

fn denial(r: &Reviewed) -> &str {
    let resp = r.response();
    assert!(!resp.allowed, "expected a denial");
    assert_eq!(resp.result.code, 403);
    &resp.result.message
}

fn assert_allowed_quietly(r: &Reviewed) {
    let resp = r.response();
    assert!(resp.allowed, "denied: {}", resp.result.message);
    assert!(resp.warnings.is_none(), "{:?}", resp.warnings);
}

// --- unrelated objects are never looked up -------------------------------------------------

#[tokio::test]
async fn unrelated_workloads_are_never_looked_up() {
    let c = Recording::new(MemoryCluster::default());
    for config in [single(), sticky()] {
        for (kind, resource) in [
            ("Deployment", "deployments"),
            ("StatefulSet", "statefulsets"),
            ("ReplicaSet", "replicasets"),
            ("DaemonSet", "daemonsets"),
        ] {
            let mut d = deployment(30, "nginx:1.27");
            d["kind"] = json!(kind);
            let body = request("apps", kind, ("apps", resource), None, "CREATE", d, None);
            assert_allowed_quietly(&validate(config.clone(), &c, &body).await);
        }
    }
    assert_eq!(c.calls(), Vec::<String>::new());
}

#[tokio::test]
async fn unrelated_pods_are_never_looked_up() {
    let c = Recording::new(MemoryCluster::default());
    let body = create_pod(bare_pod("web", "nginx"));
    for action in [Action::Mutate, Action::Validate] {
        for config in [single(), sticky()] {
            let r = run(config, &c, action, None, &body).await;
            assert!(r.response().allowed);
        }
    }
    assert_eq!(c.calls(), Vec::<String>::new());
}

#[tokio::test]
async fn services_that_route_to_no_pods_are_not_looked_up() {
    let c = Recording::new(MemoryCluster::default());
    for config in [single(), sticky()] {
        for spec in [
            json!({"selector": {}}),
            json!({"type": "ExternalName", "externalName": "bk.example.com"}),
        ] {
            let mut s = service("bk", json!({}));
            s.spec = Some(serde_json::from_value(spec).expect("spec"));
            assert_allowed_quietly(&validate(config.clone(), &c, &create_service(&s)).await);
        }
    }
    assert_eq!(c.calls(), Vec::<String>::new());
}

#[tokio::test]
async fn a_service_is_one_pod_list_in_either_mode() {
    for (config, extra) in [(single(), json!({})), (sticky(), sticky_extra())] {
        let c = Recording::new(MemoryCluster::default());
        let r = validate(config, &c, &create_service(&service("bk", extra))).await;
        assert_allowed_quietly(&r);
        assert_eq!(c.calls(), ["pods ci app=bk"]);
    }
}

// --- workloads -------------------------------------------------------------------------------

#[tokio::test]
async fn rejects_buildkitd_deployment_with_three_replicas_without_lookups() {
    let c = Recording::new(MemoryCluster::default());
    let r = validate(
        single(),
        &c,
        &create_deployment(deployment(3, "earthly/buildkitd")),
    )
    .await;
    assert_eq!(
        denial(&r),
        "earthly/buildkitd does not support multi-node setups: Deployment ci/bk asks for 3 \
         replicas. Set replicas: 1, or enable sticky multi-instance mode and front it with a \
         Service using sessionAffinity: ClientIP."
    );
    assert_eq!(c.calls(), Vec::<String>::new());
}

#[tokio::test]
async fn metadata_update_of_existing_multi_replica_deployment_passes_unjudged() {
    let c = Recording::new(MemoryCluster::default());
    let old = deployment(3, "earthly/buildkitd");
    let mut new = old.clone();
    new["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "2"});
    let body = request(
        "apps",
        "Deployment",
        ("apps", "deployments"),
        None,
        "UPDATE",
        new,
        Some(old),
    );
    assert_allowed_quietly(&validate(single(), &c, &body).await);
}

#[tokio::test]
async fn update_that_changes_replicas_is_judged() {
    let c = Recording::new(MemoryCluster::default());
    let old = deployment(1, "earthly/buildkitd");
    let new = deployment(2, "earthly/buildkitd");
    let body = request(
        "apps",
        "Deployment",
        ("apps", "deployments"),
        None,
        "UPDATE",
        new,
        Some(old),
    );
    assert!(denial(&validate(single(), &c, &body).await).contains("asks for 2 replicas"));
}

#[tokio::test]
async fn deleting_workload_passes_unjudged() {
    let c = Recording::new(MemoryCluster::default());
    let mut d = deployment(3, "earthly/buildkitd");
    d["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert_allowed_quietly(&validate(single(), &c, &create_deployment(d)).await);
}

#[tokio::test]
async fn replicaset_of_a_deployment_passes_unjudged() {
    let c = Recording::new(MemoryCluster::default());
    let mut rs = deployment(3, "earthly/buildkitd");
    rs["kind"] = json!("ReplicaSet");
    rs["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment",
        "name": "bk", "uid": "u", "controller": true}]);
    let body = request(
        "apps",
        "ReplicaSet",
        ("apps", "replicasets"),
        None,
        "CREATE",
        rs,
        None,
    );
    assert_allowed_quietly(&validate(single(), &c, &body).await);
}

#[tokio::test]
async fn unreadable_role_annotation_in_template_is_reported() {
    let c = Recording::new(MemoryCluster::default());
    let mut d = deployment(1, "earthly/buildkitd");
    d["spec"]["template"]["metadata"]["annotations"] = json!({"earthly.dev/role": "boss"});
    let r = validate(single(), &c, &create_deployment(d)).await;
    assert!(denial(&r).starts_with("Deployment ci/bk: annotation earthly.dev/role"));
}

#[tokio::test]
async fn sticky_mode_rejects_multi_replica_deployment_behind_plain_service() {
    let c = Recording::new(MemoryCluster {
        services: vec![
            service("bk", json!({})),
            service("other", json!({"selector": {"app": "web"}})),
        ],
        ..Default::default()
    });
    let r = validate(
        sticky(),
        &c,
        &create_deployment(deployment(3, "earthly/buildkitd")),
    )
    .await;
    assert_eq!(
        denial(&r),
        "earthly/buildkitd multi-instance mode needs sticky sessions: Deployment ci/bk asks \
         for 3 replicas behind Service ci/bk, which has sessionAffinity: None. Set replicas: \
         1, or set sessionAffinity: ClientIP with sessionAffinityConfig.clientIP.timeoutSeconds \
         of at least 600 on the Service."
    );
    assert_eq!(c.calls(), vec!["services ci"]);
}

#[tokio::test]
async fn sticky_mode_accepts_multi_replica_deployment_behind_sticky_service() {
    let c = Recording::new(MemoryCluster {
        services: vec![service("bk", sticky_extra())],
        ..Default::default()
    });
    let r = validate(
        sticky(),
        &c,
        &create_deployment(deployment(3, "earthly/buildkitd")),
    )
    .await;
    assert_allowed_quietly(&r);
}

#[tokio::test]
async fn sticky_mode_rejects_a_timeout_below_the_configured_minimum() {
    let c = Recording::new(MemoryCluster {
        services: vec![service("bk", sticky_extra())],
        ..Default::default()
    });
    let config = config("buildkitd: {instances: sticky, minStickyTimeoutSeconds: 3600}");
    let r = validate(
        config,
        &c,
        &create_deployment(deployment(3, "earthly/buildkitd")),
    )
    .await;
    assert!(denial(&r).contains(
        "which keeps a client on one instance for only 600 s (sessionAffinityConfig.clientIP.timeoutSeconds)"
    ));
}

// --- scale -----------------------------------------------------------------------------------

#[tokio::test]
async fn rejects_scaling_buildkitd_deployment_to_two() {
    let c = Recording::new(MemoryCluster {
        workloads: vec![bk_workload(1)],
        ..Default::default()
    });
    let r = validate(single(), &c, &scale(1, 2)).await;
    assert_eq!(
        denial(&r),
        "earthly/buildkitd does not support multi-node setups: Deployment ci/bk is being \
         scaled to 2 replicas. Scale it to 1 replica, or enable sticky multi-instance mode \
         and front it with a Service using sessionAffinity: ClientIP."
    );
    assert_eq!(c.calls(), vec!["Deployment ci/bk"]);
}

#[tokio::test]
async fn scaling_to_one_or_to_the_same_count_is_not_looked_up() {
    let c = Recording::new(MemoryCluster::default());
    assert_allowed_quietly(&validate(single(), &c, &scale(3, 1)).await);
    assert_allowed_quietly(&validate(single(), &c, &scale(3, 3)).await);
    assert_eq!(c.calls(), Vec::<String>::new());
}

#[tokio::test]
async fn scaling_an_unrelated_or_missing_deployment_is_allowed() {
    let mut web = bk_workload(1);
    web.template = serde_json::from_value(template("nginx")).expect("template");
    let c = Recording::new(MemoryCluster {
        workloads: vec![web],
        ..Default::default()
    });
    assert_allowed_quietly(&validate(single(), &c, &scale(1, 20)).await);
    let empty = Recording::new(MemoryCluster::default());
    assert_allowed_quietly(&validate(single(), &empty, &scale(1, 20)).await);
}

#[tokio::test]
async fn sticky_mode_scaling_behind_sticky_service_is_allowed() {
    let c = Recording::new(MemoryCluster {
        workloads: vec![bk_workload(1)],
        services: vec![service("bk", sticky_extra())],
        ..Default::default()
    });
    assert_allowed_quietly(&validate(sticky(), &c, &scale(1, 4)).await);
    assert_eq!(c.calls(), vec!["Deployment ci/bk", "services ci"]);
}

// --- lookup failures -------------------------------------------------------------------------

#[tokio::test]
async fn failed_lookup_denies_in_deny_mode() {
    let c = Recording::failing(LookupError::Timeout(2000));
    let r = validate(single(), &c, &scale(1, 2)).await;
    assert_eq!(
        denial(&r),
        "Deployment ci/bk: cannot check for unsupported buildkitd setups: the lookup of \
         Deployment ci/bk failed: the Kubernetes API did not answer within 2000 ms. Retry \
         once the webhook can reach the Kubernetes API (its cluster.failureMode is deny)."
    );
}

#[tokio::test]
async fn failed_lookup_admits_with_a_warning_in_allow_mode() {
    let c = Recording::failing(LookupError::Unavailable);
    let r = validate(config("cluster: {failureMode: allow}"), &c, &scale(1, 2)).await;
    let resp = r.response();
    assert!(resp.allowed);
    assert_eq!(
        resp.warnings.as_deref(),
        Some(
            &[
                "Deployment ci/bk: cannot check for unsupported buildkitd setups: the lookup \
               of Deployment ci/bk failed: no Kubernetes API is configured; admitted \
               unchecked (the webhook's cluster.failureMode is allow)"
                    .to_owned()
            ][..]
        )
    );
}

#[tokio::test]
async fn failed_lookup_keeps_the_templates_own_warnings() {
    // Sticky mode looks up the Services in front of a 3-replica buildkitd; the lookup fails and
    // the failure mode admits, and the template's TLS warning still reaches the person applying.
    let c = Recording::failing(LookupError::Unavailable);
    let mut d = deployment(3, "earthly/buildkitd");
    d["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
        {"name": "BUILDKIT_TCP_TRANSPORT_ENABLED", "value": "true"},
        {"name": "BUILDKIT_TLS_ENABLED", "value": "false"}]);
    let allow = config("buildkitd: {instances: sticky}\ncluster: {failureMode: allow}");
    let r = validate(allow, &c, &create_deployment(d)).await;
    assert!(r.response().allowed);
    assert_eq!(
        r.summary.warned,
        vec![RuleId::BuildkitdTlsOff, RuleId::LookupFailed],
        "{:?}",
        r.response().warnings
    );
}

#[tokio::test]
async fn failed_lookup_in_warn_mode_is_a_warning_not_a_denial() {
    let c = Recording::failing(LookupError::Unavailable);
    let r = run(
        single(),
        &c,
        Action::Validate,
        Some(Mode::Warn),
        &scale(1, 2),
    )
    .await;
    assert!(r.response().allowed);
    assert_eq!(r.summary.violations[0].rule, RuleId::LookupFailed);
}

#[tokio::test]
async fn lookups_of_one_review_share_the_timeout() {
    let r = validate(
        config("cluster: {lookupTimeoutMs: 50}"),
        &Recording::hanging(),
        &create_pod(bare_pod("bk-2", "earthly/buildkitd")),
    )
    .await;
    assert!(denial(&r).contains(
        "the lookup of the Services of namespace ci failed: the Kubernetes API did not answer within 50 ms."
    ));
}

// --- autoscalers -----------------------------------------------------------------------------

fn autoscaler(version: &str, max: i32) -> Vec<u8> {
    let hpa = json!({"apiVersion": format!("autoscaling/{version}"), "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "bk", "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bk"},
            "minReplicas": 1, "maxReplicas": max}});
    request(
        "autoscaling",
        "HorizontalPodAutoscaler",
        ("autoscaling", "horizontalpodautoscalers"),
        None,
        "CREATE",
        hpa,
        None,
    )
}

#[tokio::test]
async fn rejects_autoscaler_of_buildkitd_in_v2_and_v1() {
    for version in ["v2", "v1"] {
        let c = Recording::new(MemoryCluster {
            workloads: vec![bk_workload(1)],
            ..Default::default()
        });
        let r = validate(single(), &c, &autoscaler(version, 5)).await;
        assert_eq!(
            denial(&r),
            "earthly/buildkitd does not support multi-node setups: HorizontalPodAutoscaler \
             ci/bk may scale Deployment ci/bk up to 5 replicas. Set maxReplicas: 1 (or remove \
             the autoscaler), or enable sticky multi-instance mode and front it with a \
             Service using sessionAffinity: ClientIP."
        );
        assert_eq!(c.calls(), vec!["Deployment ci/bk"]);
    }
}

#[tokio::test]
async fn autoscaler_with_max_one_is_not_looked_up() {
    let c = Recording::new(MemoryCluster::default());
    assert_allowed_quietly(&validate(single(), &c, &autoscaler("v2", 1)).await);
    assert_eq!(c.calls(), Vec::<String>::new());
}

// --- services (sticky mode) ------------------------------------------------------------------

#[tokio::test]
async fn sticky_mode_rejects_plain_service_selecting_buildkitd_pods() {
    let c = Recording::new(MemoryCluster {
        pods: vec![pod(bare_pod("bk-0", "earthly/buildkitd"))],
        ..Default::default()
    });
    let r = validate(sticky(), &c, &create_service(&service("bk", json!({})))).await;
    assert_eq!(
        denial(&r),
        "earthly/buildkitd multi-instance mode needs sticky sessions: Service ci/bk selects \
         buildkitd Pod ci/bk-0 but has sessionAffinity: None. Set sessionAffinity: ClientIP \
         with sessionAffinityConfig.clientIP.timeoutSeconds of at least 600, or change its \
         selector so that it selects no buildkitd pods."
    );
    assert_eq!(c.calls(), vec!["pods ci app=bk"]);
}

#[tokio::test]
async fn sticky_mode_accepts_plain_service_selecting_other_pods() {
    let c = Recording::new(MemoryCluster {
        pods: vec![pod(bare_pod("web-0", "nginx"))],
        ..Default::default()
    });
    let r = validate(sticky(), &c, &create_service(&service("bk", json!({})))).await;
    assert_allowed_quietly(&r);
}

// --- bare pods -------------------------------------------------------------------------------

#[tokio::test]
async fn rejects_second_bare_buildkitd_pod_behind_the_same_service() {
    let c = Recording::new(MemoryCluster {
        services: vec![service("bk", json!({}))],
        pods: vec![pod(bare_pod("bk-1", "earthly/buildkitd"))],
        ..Default::default()
    });
    let r = validate(
        single(),
        &c,
        &create_pod(bare_pod("bk-2", "earthly/buildkitd")),
    )
    .await;
    assert_eq!(
        denial(&r),
        "earthly/buildkitd does not support multi-node setups: Pod ci/bk-2 would be a second \
         buildkitd behind Service ci/bk, next to Pod ci/bk-1. Run one buildkitd per Service \
         (delete Pod ci/bk-1 first), or enable sticky multi-instance mode and front it with a \
         Service using sessionAffinity: ClientIP."
    );
    assert_eq!(c.calls(), vec!["services ci", "pods ci app=bk"]);
}

#[tokio::test]
async fn terminating_or_finished_buildkitd_pod_does_not_count() {
    let mut going = bare_pod("bk-1", "earthly/buildkitd");
    going["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let mut done = bare_pod("bk-0", "earthly/buildkitd");
    done["status"] = json!({"phase": "Failed"});
    let c = Recording::new(MemoryCluster {
        services: vec![service("bk", json!({}))],
        pods: vec![pod(going), pod(done)],
        ..Default::default()
    });
    let r = validate(
        single(),
        &c,
        &create_pod(bare_pod("bk-2", "earthly/buildkitd")),
    )
    .await;
    assert!(r.response().allowed);
}

#[tokio::test]
async fn bare_buildkitd_pod_behind_no_service_is_allowed() {
    let c = Recording::new(MemoryCluster {
        pods: vec![pod(bare_pod("bk-1", "earthly/buildkitd"))],
        ..Default::default()
    });
    let r = validate(
        single(),
        &c,
        &create_pod(bare_pod("bk-2", "earthly/buildkitd")),
    )
    .await;
    assert!(r.response().allowed);
    assert_eq!(c.calls(), vec!["services ci"]);
}

#[tokio::test]
async fn controller_owned_buildkitd_pod_is_not_looked_up() {
    let c = Recording::new(MemoryCluster::default());
    let mut p = bare_pod("bk-2", "earthly/buildkitd");
    p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": "bk-7f5c", "uid": "u", "controller": true}]);
    assert!(
        validate(single(), &c, &create_pod(p))
            .await
            .response()
            .allowed
    );
    assert_eq!(c.calls(), Vec::<String>::new());
}

#[tokio::test]
async fn bare_pod_update_without_label_change_is_not_looked_up() {
    let c = Recording::new(MemoryCluster::default());
    let p = bare_pod("bk-2", "earthly/buildkitd");
    let mut new = p.clone();
    new["metadata"]["annotations"] = json!({"note": "x"});
    let body = request("", "Pod", ("", "pods"), None, "UPDATE", new, Some(p));
    assert!(validate(single(), &c, &body).await.response().allowed);
    assert_eq!(c.calls(), Vec::<String>::new());
}

#[tokio::test]
async fn sticky_mode_accepts_second_bare_pod_behind_sticky_service_without_listing_pods() {
    let c = Recording::new(MemoryCluster {
        services: vec![service("bk", sticky_extra())],
        pods: vec![pod(bare_pod("bk-1", "earthly/buildkitd"))],
        ..Default::default()
    });
    let r = validate(
        sticky(),
        &c,
        &create_pod(bare_pod("bk-2", "earthly/buildkitd")),
    )
    .await;
    assert!(r.response().allowed);
    assert_eq!(c.calls(), vec!["services ci"]);
}

// --- Pod Security Admission at /mutate -------------------------------------------------------

fn runner_pod() -> Vec<u8> {
    create_pod(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "runner", "namespace": NS},
        "spec": {"containers": [{"name": "earthly", "image": "earthly/earthly:v0.8.15"}]}}))
}

fn namespace(level: &str) -> MemoryCluster {
    MemoryCluster {
        namespaces: [(
            NS.to_owned(),
            [(
                "pod-security.kubernetes.io/enforce".to_owned(),
                level.to_owned(),
            )]
            .into_iter()
            .collect(),
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn mutation_in_baseline_namespace_is_denied_in_enforce_mode() {
    let c = Recording::new(namespace("baseline"));
    let r = run(single(), &c, Action::Mutate, None, &runner_pod()).await;
    assert_eq!(
        denial(&r),
        "Pod ci/runner: container earthly (all-in-one Earthly runner) must run privileged, \
         but namespace ci enforces the baseline Pod Security Standard \
         (pod-security.kubernetes.io/enforce: baseline), so Pod Security Admission will \
         refuse the pod. Label the namespace pod-security.kubernetes.io/enforce: privileged, \
         or run Earthly in a namespace that allows privileged pods."
    );
    assert!(r.response().patch.is_none());
    assert_eq!(c.calls(), vec!["namespace ci"]);
}

#[tokio::test]
async fn mutation_in_restricted_namespace_is_a_warning_in_warn_mode() {
    let c = Recording::new(namespace("restricted"));
    let r = run(
        single(),
        &c,
        Action::Mutate,
        Some(Mode::Warn),
        &runner_pod(),
    )
    .await;
    let resp = r.response();
    assert!(resp.allowed);
    assert!(resp.patch.is_some(), "the pod is still mutated");
    let warnings = resp.warnings.as_ref().expect("warnings");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("enforces the restricted Pod Security Standard"))
    );
}

#[tokio::test]
async fn mutation_in_privileged_namespace_is_allowed() {
    let c = Recording::new(namespace("privileged"));
    let r = run(single(), &c, Action::Mutate, None, &runner_pod()).await;
    assert!(r.response().allowed);
    assert!(r.response().patch.is_some());
}

#[tokio::test]
async fn failed_namespace_lookup_skips_the_check_even_in_deny_mode() {
    let c = Recording::failing(LookupError::Timeout(2000));
    let r = run(single(), &c, Action::Mutate, None, &runner_pod()).await;
    let resp = r.response();
    assert!(resp.allowed);
    assert!(resp.patch.is_some());
    assert_eq!(c.calls(), vec!["namespace ci"]);
}

#[tokio::test]
async fn already_privileged_buildkitd_pod_is_checked_too() {
    let c = Recording::new(namespace("baseline"));
    let r = run(
        single(),
        &c,
        Action::Mutate,
        None,
        &create_pod(bare_pod("bk", "earthly/buildkitd")),
    )
    .await;
    assert!(denial(&r).contains("container b (buildkitd) must run privileged"));
}

#[tokio::test]
async fn remote_client_pod_is_not_checked() {
    let c = Recording::new(namespace("restricted"));
    let body = create_pod(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "client", "namespace": NS},
        "spec": {"containers": [{"name": "earthly", "image": "earthly/earthly",
            "env": [{"name": "BUILDKIT_HOST", "value": "tcp://bk:8372"}]}]}}));
    let r = run(single(), &c, Action::Mutate, None, &body).await;
    assert_allowed_quietly(&r);
    assert_eq!(c.calls(), Vec::<String>::new());
}

// --- modes -----------------------------------------------------------------------------------

#[tokio::test]
async fn audit_mode_keeps_every_message_of_a_rule_broken_twice() {
    let c = Recording::new(MemoryCluster {
        services: vec![service("a", json!({})), service("b", json!({}))],
        ..Default::default()
    });
    let r = run(
        sticky(),
        &c,
        Action::Validate,
        Some(Mode::Audit),
        &create_deployment(deployment(3, "earthly/buildkitd")),
    )
    .await;
    let resp = r.response();
    assert!(resp.allowed);
    let note = &resp.audit_annotations[RuleId::BuildkitdServiceNotSticky.as_str()];
    assert!(note.contains("behind Service ci/a") && note.contains("; earthly/buildkitd"));
    assert!(note.contains("behind Service ci/b"));
}

// --- what sits behind a buildkitd Service ------------------------------------------------------

/// A buildkitd Deployment `name` of one replica whose pods carry `app: bk` and `slot: <name>`,
/// selected by `slot`; `tls` is its `BUILDKIT_TLS_ENABLED` and certificate Secret.
fn slot_deployment(name: &str, image: &str, tls: Option<&str>) -> Value {
    let mut container = json!({"name": "b", "image": image});
    let mut volumes = json!([]);
    if let Some(secret) = tls {
        container["env"] = json!([{"name": "BUILDKIT_TLS_ENABLED", "value": "true"}]);
        container["volumeMounts"] =
            json!([{"name": "tls", "mountPath": "/etc/ca.pem", "subPath": "ca.pem"}]);
        volumes = json!([{"name": "tls", "secret": {"secretName": secret}}]);
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "bk", "slot": name}},
            "template": {"metadata": {"labels": {"app": "bk", "slot": name}},
                "spec": {"containers": [container], "volumes": volumes}}}})
}

/// A running pod of `deployment` (through ReplicaSet `<deployment>-<hash>`), as the API lists it.
fn pod_of(deployment: &Value, hash: &str) -> Pod {
    let name = deployment["metadata"]["name"].as_str().expect("name");
    let template = &deployment["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    labels["pod-template-hash"] = json!(hash);
    pod(
        json!({"metadata": {"name": format!("{name}-{hash}-x"), "namespace": NS,
        "labels": labels,
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": format!("{name}-{hash}"), "uid": "u", "controller": true}]},
        "spec": template["spec"].clone(), "status": {"phase": "Running"}}),
    )
}

#[tokio::test]
async fn rejects_second_buildkitd_deployment_behind_one_service() {
    let blue = slot_deployment("bk-blue", "earthly/buildkitd:v0.8.15", None);
    let c = Recording::new(MemoryCluster {
        services: vec![service("bk", json!({}))],
        pods: vec![pod_of(&blue, "7d9f")],
        ..Default::default()
    });
    let green = slot_deployment("bk-green", "earthly/buildkitd:v0.8.16", None);
    let r = validate(single(), &c, &create_deployment(green.clone())).await;
    assert_eq!(
        denial(&r),
        "earthly/buildkitd does not support multi-node setups: Deployment ci/bk-green would be a \
         second buildkitd behind Service ci/bk, next to Deployment ci/bk-blue. Run one buildkitd \
         per Service (remove Deployment ci/bk-blue first, or label the pods of Deployment \
         ci/bk-green so that Service ci/bk does not select them), or enable sticky \
         multi-instance mode and front it with a Service using sessionAffinity: ClientIP."
    );
    assert_eq!(c.calls(), ["services ci", "pods ci app=bk"]);
    assert_audited_as(
        &c,
        &create_deployment(green),
        RuleId::BuildkitdSecondWorkload,
    )
    .await;
}

/// Audit mode records the finding of `body` under `rule`.
async fn assert_audited_as(c: &Recording, body: &[u8], rule: RuleId) {
    let config = if rule == RuleId::BuildkitdFleetTls {
        sticky()
    } else {
        single()
    };
    let r = run(config, c, Action::Validate, Some(Mode::Audit), body).await;
    let notes = &r.response().audit_annotations;
    assert!(notes.contains_key(rule.as_str()), "{notes:?}");
}

#[tokio::test]
async fn a_rollout_of_the_same_deployment_is_one_instance() {
    let blue = slot_deployment("bk-blue", "earthly/buildkitd:v0.8.15", None);
    let c = Recording::new(MemoryCluster {
        services: vec![service("bk", json!({}))],
        // The old and the new ReplicaSet's pods, mid-rollout.
        pods: vec![pod_of(&blue, "7d9f"), pod_of(&blue, "5c4b")],
        ..Default::default()
    });
    let mut updated = blue.clone();
    updated["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("earthly/buildkitd:v0.8.16");
    let body = request(
        "apps",
        "Deployment",
        ("apps", "deployments"),
        None,
        "UPDATE",
        updated,
        Some(blue),
    );
    assert_allowed_quietly(&validate(single(), &c, &body).await);
    // A Service over both ReplicaSets' pods is fine too.
    assert_allowed_quietly(
        &validate(single(), &c, &create_service(&service("bk", json!({})))).await,
    );
}

#[tokio::test]
async fn rejects_service_in_front_of_two_buildkitd_deployments() {
    let blue = slot_deployment("bk-blue", "earthly/buildkitd:v0.8.15", None);
    let green = slot_deployment("bk-green", "earthly/buildkitd:v0.8.15", None);
    let c = Recording::new(MemoryCluster {
        pods: vec![pod_of(&blue, "7d9f"), pod_of(&green, "1a2b")],
        ..Default::default()
    });
    let r = validate(single(), &c, &create_service(&service("bk", json!({})))).await;
    assert_eq!(
        denial(&r),
        "earthly/buildkitd does not support multi-node setups: Service ci/bk selects 2 buildkitd \
         instances: Deployment ci/bk-blue and Deployment ci/bk-green. Change its selector so \
         that it selects the pods of one of them, or enable sticky multi-instance mode and \
         front it with a Service using sessionAffinity: ClientIP."
    );
    assert_eq!(c.calls(), ["pods ci app=bk"]);
    // Sticky mode: a sticky Service over both is what the mode is for.
    let r = validate(
        sticky(),
        &c,
        &create_service(&service("bk", sticky_extra())),
    )
    .await;
    assert_allowed_quietly(&r);
}

#[tokio::test]
async fn sticky_mode_rejects_a_fleet_that_does_not_share_its_tls_configuration() {
    let blue = slot_deployment("bk-blue", "earthly/buildkitd:v0.8.15", Some("bk-tls"));
    let green = slot_deployment(
        "bk-green",
        "earthly/buildkitd:v0.8.15",
        Some("bk-tls-rotated"),
    );
    let c = Recording::new(MemoryCluster {
        services: vec![service("bk", sticky_extra())],
        pods: vec![pod_of(&blue, "7d9f")],
        ..Default::default()
    });
    let r = validate(sticky(), &c, &create_deployment(green.clone())).await;
    assert_eq!(
        denial(&r),
        "earthly/buildkitd multi-instance mode needs one TLS configuration across the fleet: the \
         buildkitd instances behind Service ci/bk differ: Deployment ci/bk-blue has TLS on with \
         certificates from Secret bk-tls; Deployment ci/bk-green has TLS on with certificates \
         from Secret bk-tls-rotated. Give every instance the same BUILDKIT_TLS_ENABLED and mount \
         the same certificate Secret at /etc/*.pem, or run one buildkitd per Service."
    );
    let body = create_deployment(green.clone());
    assert_audited_as(&c, &body, RuleId::BuildkitdFleetTls).await;
    // The Service's side, in warn mode: admitted, with the same finding as a warning.
    let c = Recording::new(MemoryCluster {
        pods: vec![pod_of(&blue, "7d9f"), pod_of(&green, "1a2b")],
        ..Default::default()
    });
    let body = create_service(&service("bk", sticky_extra()));
    let r = run(sticky(), &c, Action::Validate, Some(Mode::Warn), &body).await;
    let resp = r.response();
    assert!(resp.allowed);
    let warnings = resp.warnings.as_deref().unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("behind Service ci/bk differ")),
        "{warnings:?}"
    );
    // The same Secret everywhere: nothing to say.
    let same = slot_deployment("bk-green", "earthly/buildkitd:v0.8.15", Some("bk-tls"));
    let c = Recording::new(MemoryCluster {
        services: vec![service("bk", sticky_extra())],
        pods: vec![pod_of(&blue, "7d9f")],
        ..Default::default()
    });
    assert_allowed_quietly(&validate(sticky(), &c, &create_deployment(same)).await);
}

fn client_pod(image: &str, host: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "client", "namespace": NS},
        "spec": {"containers": [{"name": "earthly", "image": image,
            "env": [{"name": "BUILDKIT_HOST", "value": host}]}]}})
}

#[tokio::test]
async fn remote_client_of_another_version_is_warned_about() {
    let blue = slot_deployment("bk-blue", "earthly/buildkitd:v0.8.15", None);
    let c = Recording::new(MemoryCluster {
        services: vec![service("bk", json!({}))],
        pods: vec![pod_of(&blue, "7d9f")],
        ..Default::default()
    });
    let body = create_pod(client_pod(
        "earthly/earthly:v0.8.14",
        "tcp://bk.ci.svc.cluster.local:8372",
    ));
    let r = validate(single(), &c, &body).await;
    let resp = r.response();
    assert!(resp.allowed);
    assert_eq!(
        resp.warnings.as_deref(),
        Some(
            &[
                "Pod ci/client: container earthly runs Earthly v0.8.14 (spec.containers[0].image) \
               but Service ci/bk sends it to buildkitd v0.8.15 (Deployment ci/bk-blue); run the \
               same version of client and buildkitd, mismatched versions are unsupported"
                    .to_owned()
            ][..]
        )
    );
    assert_eq!(c.calls(), ["service ci/bk", "pods ci app=bk"]);
}

#[tokio::test]
async fn remote_clients_of_unknown_version_or_outside_addresses_cost_no_lookup() {
    let c = Recording::new(MemoryCluster::default());
    for (image, host) in [
        ("earthly/earthly:latest", "tcp://bk:8372"),
        ("earthly/earthly", "tcp://bk:8372"),
        (
            "earthly/earthly@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "tcp://bk:8372",
        ),
        ("earthly/earthly:v0.8.14", "tcp://10.0.0.7:8372"),
        ("earthly/earthly:v0.8.14", "tcp://builder.example.com:8372"),
    ] {
        let r = validate(single(), &c, &create_pod(client_pod(image, host))).await;
        assert!(r.response().allowed, "{image} {host}");
    }
    assert_eq!(c.calls(), Vec::<String>::new());
}

#[tokio::test]
async fn remote_client_job_template_is_compared_and_named() {
    let blue = slot_deployment("bk-blue", "earthly/buildkitd:v0.8.15", None);
    let c = Recording::new(MemoryCluster {
        services: vec![service("bk", json!({}))],
        pods: vec![pod_of(&blue, "7d9f")],
        ..Default::default()
    });
    let client = client_pod("earthly/earthly:v0.8.16", "tcp://bk:8372");
    let job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "build", "namespace": NS},
        "spec": {"template": {"spec": client["spec"].clone()}}});
    let body = request("batch", "Job", ("batch", "jobs"), None, "CREATE", job, None);
    let r = validate(single(), &c, &body).await;
    let warnings = r.response().warnings.clone().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "Job ci/build: container earthly runs Earthly v0.8.16 \
             (spec.template.spec.containers[0].image) but Service ci/bk sends it to buildkitd \
             v0.8.15"
        ),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn failed_version_lookup_follows_the_failure_mode() {
    let body = create_pod(client_pod("earthly/earthly:v0.8.14", "tcp://bk:8372"));
    let api_down = || Recording::failing(LookupError::Api("etcd is down".to_owned()));
    let r = validate(single(), &api_down(), &body).await;
    assert!(denial(&r).contains("the lookup of Service ci/bk failed: etcd is down"));
    let r = validate(config("cluster: {failureMode: allow}"), &api_down(), &body).await;
    assert!(r.response().allowed);
}
