use super::*;
use crate::config::Detection;
use serde_json::json;

fn detector() -> Detector {
    Detector::new(&Detection::default()).expect("detector")
}

fn pod(v: serde_json::Value) -> Pod {
    serde_json::from_value(v).expect("pod")
}

fn service(spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": "bk", "namespace": "ci"}, "spec": spec}))
        .expect("service")
}

fn plain() -> Service {
    service(json!({"selector": {"app": "bk"}}))
}

fn sticky() -> Service {
    service(json!({"selector": {"app": "bk"}, "sessionAffinity": "ClientIP"}))
}

fn instance(name: &str, tls: Tls) -> Instance {
    Instance {
        name: name.to_owned(),
        tls,
        image: Some("earthly/buildkitd:v0.8.15".to_owned()),
        family: Family::Earthly,
    }
}

fn tls_on(secret: &str) -> Tls {
    Tls {
        enabled: true,
        secrets: [secret.to_owned()].into_iter().collect(),
    }
}

/// A buildkitd pod of ReplicaSet `rs` with the Deployment controller's hash label.
fn rs_pod(name: &str, rs: &str, hash: &str) -> Pod {
    pod(json!({"metadata": {"name": name, "namespace": "ci",
        "labels": {"app": "bk", "pod-template-hash": hash},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
            "uid": "u", "controller": true}]},
        "spec": {"containers": [{"name": "b", "image": "earthly/buildkitd:v0.8.15"}]}}))
}

#[test]
fn pods_of_one_deployment_are_one_instance_across_its_replicasets() {
    let pods = [
        rs_pod("bk-7d9f-a", "bk-7d9f", "7d9f"),
        rs_pod("bk-5c4b-b", "bk-5c4b", "5c4b"),
        rs_pod("bk-green-1a2b-c", "bk-green-1a2b", "1a2b"),
    ];
    let names: Vec<String> = instances(&detector(), &pods)
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["Deployment ci/bk", "Deployment ci/bk-green"]);
}

#[test]
fn bare_pods_and_other_controllers_are_named_as_they_are() {
    let bare = pod(json!({"metadata": {"name": "bk-0", "namespace": "ci"}}));
    assert_eq!(controller_of(&bare), "Pod ci/bk-0");
    let sts = pod(json!({"metadata": {"name": "bk-0", "namespace": "ci",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "bk",
            "uid": "u", "controller": true}]}}));
    assert_eq!(controller_of(&sts), "StatefulSet ci/bk");
    // A ReplicaSet without the hash label (no Deployment made it) is itself the controller.
    let rs = pod(json!({"metadata": {"name": "x", "namespace": "ci",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "bk-blue",
            "uid": "u", "controller": true}]}}));
    assert_eq!(controller_of(&rs), "ReplicaSet ci/bk-blue");
}

#[test]
fn tls_reads_the_switch_and_the_secrets_at_the_certificate_paths() {
    let spec: PodSpec = serde_json::from_value(json!({
        "containers": [{"name": "b", "image": "earthly/buildkitd",
            "env": [{"name": "BUILDKIT_TLS_ENABLED", "value": "true"}],
            "volumeMounts": [
                {"name": "ca", "mountPath": "/etc/ca.pem", "subPath": "ca.pem"},
                {"name": "pair", "mountPath": "/etc/cert.pem", "subPath": "cert.pem"},
                {"name": "registry", "mountPath": "/root/.docker"}]}],
        "volumes": [
            {"name": "ca", "secret": {"secretName": "bk-ca"}},
            {"name": "pair", "projected": {"sources": [{"secret": {"name": "bk-pair"}}]}},
            {"name": "registry", "secret": {"secretName": "registry-auth"}}]}))
    .expect("spec");
    let tls = Tls::of(&spec, &spec.containers[0]);
    assert!(tls.enabled);
    assert_eq!(
        tls.secrets.iter().map(String::as_str).collect::<Vec<_>>(),
        ["bk-ca", "bk-pair"],
        "the registry Secret is not mounted at a certificate path"
    );
    assert_eq!(
        tls.describe(),
        "TLS on with certificates from Secret bk-ca, bk-pair"
    );
    let off: PodSpec = serde_json::from_value(json!({"containers": [{"name": "b",
        "env": [{"name": "BUILDKIT_TLS_ENABLED", "value": "false"}]}]}))
    .expect("spec");
    assert_eq!(Tls::of(&off, &off.containers[0]), Tls::default());
}

#[test]
fn single_mode_rejects_a_second_workload_behind_one_service() {
    let others = [instance("Deployment ci/bk-blue", Tls::default())];
    let f = check_joining(
        "Deployment ci/bk-green",
        &Tls::default(),
        &plain(),
        &others,
        Instances::Single,
        Family::Earthly,
        600,
    );
    assert_eq!(f.violations.len(), 1);
    assert_eq!(f.violations[0].rule, RuleId::BuildkitdSecondWorkload);
    assert_eq!(
        f.violations[0].message,
        "earthly/buildkitd does not support multi-node setups: Deployment ci/bk-green would be a \
         second buildkitd behind Service ci/bk, next to Deployment ci/bk-blue. Run one buildkitd \
         per Service (remove Deployment ci/bk-blue first, or label the pods of Deployment \
         ci/bk-green so that Service ci/bk does not select them), or enable sticky \
         multi-instance mode and front it with a Service using sessionAffinity: ClientIP."
    );
}

#[test]
fn alone_behind_a_service_is_fine_in_both_modes() {
    for mode in [Instances::Single, Instances::Sticky] {
        let f = check_joining(
            "Deployment ci/bk",
            &Tls::default(),
            &plain(),
            &[],
            mode,
            Family::Earthly,
            600,
        );
        assert_eq!(f, Findings::default());
    }
}

#[test]
fn sticky_mode_wants_a_sticky_service_and_shared_tls() {
    let others = [instance("Deployment ci/bk-blue", tls_on("bk-tls"))];
    let f = check_joining(
        "Deployment ci/bk-green",
        &tls_on("bk-tls"),
        &sticky(),
        &others,
        Instances::Sticky,
        Family::Earthbuild,
        600,
    );
    assert_eq!(f, Findings::default());
    let f = check_joining(
        "Deployment ci/bk-green",
        &Tls::default(),
        &plain(),
        &others,
        Instances::Sticky,
        Family::Earthbuild,
        600,
    );
    let rules: Vec<RuleId> = f.violations.iter().map(|v| v.rule).collect();
    assert_eq!(
        rules,
        [RuleId::BuildkitdServiceNotSticky, RuleId::BuildkitdFleetTls]
    );
    assert!(
        f.violations[0].message.starts_with(
            "earthbuild/buildkitd multi-instance mode needs sticky sessions: Deployment \
             ci/bk-green would be a second buildkitd next to Deployment ci/bk-blue behind \
             Service ci/bk, which has sessionAffinity: None."
        ),
        "{}",
        f.violations[0].message
    );
}

#[test]
fn tls_violation_names_which_instances_differ() {
    let a = tls_on("bk-tls");
    let b = tls_on("bk-tls-new");
    let off = Tls::default();
    let fleet = [
        ("Deployment ci/bk-blue", &a),
        ("Deployment ci/bk-green", &b),
        ("Pod ci/bk-debug", &off),
    ];
    let v = check_tls("Service ci/bk", &fleet, Family::Earthly).expect("violation");
    assert_eq!(v.rule, RuleId::BuildkitdFleetTls);
    assert_eq!(
        v.message,
        "earthly/buildkitd multi-instance mode needs one TLS configuration across the fleet: the \
         buildkitd instances behind Service ci/bk differ: Pod ci/bk-debug has TLS off \
         (BUILDKIT_TLS_ENABLED is not true); Deployment ci/bk-blue has TLS on with certificates \
         from Secret bk-tls; Deployment ci/bk-green has TLS on with certificates from Secret \
         bk-tls-new. Give every instance the same BUILDKIT_TLS_ENABLED and mount the same \
         certificate Secret at /etc/*.pem, or run one buildkitd per Service."
    );
    assert_eq!(
        check_tls("Service ci/bk", &fleet[..1], Family::Earthly),
        None
    );
    assert_eq!(
        check_tls(
            "Service ci/bk",
            &[fleet[0], ("Pod ci/x", &a)],
            Family::Earthly
        ),
        None
    );
}

#[test]
fn single_mode_rejects_a_service_over_two_instances() {
    assert_eq!(
        check_service(
            "Service ci/bk",
            &[instance("Deployment ci/bk-blue", Tls::default())],
            Family::Earthly
        ),
        None
    );
    let v = check_service(
        "Service ci/bk",
        &[
            instance("Deployment ci/bk-blue", Tls::default()),
            instance("Deployment ci/bk-green", Tls::default()),
        ],
        Family::Earthly,
    )
    .expect("violation");
    assert_eq!(v.rule, RuleId::BuildkitdSecondWorkload);
    assert_eq!(
        v.message,
        "earthly/buildkitd does not support multi-node setups: Service ci/bk selects 2 buildkitd \
         instances: Deployment ci/bk-blue and Deployment ci/bk-green. Change its \
         selector so that it selects the pods of one of them, or enable sticky multi-instance \
         mode and front it with a Service using sessionAffinity: ClientIP."
    );
}
