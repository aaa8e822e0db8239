//! Detection notes and the mutation's "cannot run" warnings reach the person applying the pod
//! at `/mutate`, with or without a patch. Over the pod a kube-apiserver
//! sent for Earthly's remote-client Job, changed the way users get it wrong.

use earthly_webhook::cluster::NoCluster;
use earthly_webhook::config::Config;
use earthly_webhook::review::{Action, Policy, Route, review_body};
use serde_json::{Value, json};

const REMOTE_CLIENT: &str =
    "tests/data/admission-reviews/pod-create-earthly-remote-client-from-job.json";

fn review_with(change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let text = std::fs::read_to_string(REMOTE_CLIENT).expect("fixture");
    let mut review: Value = serde_json::from_str(&text).expect("json");
    change(&mut review["request"]["object"]["spec"]);
    serde_json::to_vec(&review).expect("json")
}

/// The warnings and whether a patch came back.
async fn mutate(body: &[u8]) -> (Vec<String>, bool) {
    let policy = Policy::new(Config::default()).expect("policy");
    let route = Route {
        action: Action::Mutate,
        mode: None,
    };
    let reviewed = review_body(&policy, &NoCluster, route, body)
        .await
        .expect("review");
    let resp = reviewed.response();
    (
        resp.warnings.clone().unwrap_or_default(),
        resp.patch.is_some(),
    )
}

#[tokio::test]
async fn earthly_buildkit_host_alone_gets_privileges_and_says_why() {
    // The entrypoint overwrites EARTHLY_BUILDKIT_HOST and starts its own buildkitd: unprivileged,
    // this pod exits with "Container appears to be running unprivileged".
    let body = review_with(|spec| {
        spec["containers"][0]["env"][1]["name"] = json!("EARTHLY_BUILDKIT_HOST");
    });
    let (warnings, patched) = mutate(&body).await;
    assert!(patched);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("set privileged on container earthly-remote")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("set BUILDKIT_HOST instead")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn windows_pod_gets_no_patch_but_a_warning() {
    let body = review_with(|spec| {
        spec["containers"][0]["env"] = json!([]);
        spec["os"] = json!({"name": "windows"});
    });
    let (warnings, patched) = mutate(&body).await;
    assert!(!patched);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("spec.os.name is windows"),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn remote_client_as_sent_gets_nothing() {
    let body = review_with(|_| {});
    assert_eq!(mutate(&body).await, (Vec::new(), false));
}

#[tokio::test]
async fn client_of_a_buildkitd_sidecar_stays_unprivileged() {
    // BUILDKIT_HOST on loopback, served by a native sidecar: only the sidecar is patched.
    let body = review_with(|spec| {
        spec["containers"][0]["env"][1]["value"] = json!("tcp://127.0.0.1:8372");
        spec["initContainers"] = json!([{"name": "buildkitd", "image": "earthly/buildkitd:v0.8.15",
            "restartPolicy": "Always", "securityContext": {"privileged": true}}]);
    });
    let (warnings, patched) = mutate(&body).await;
    assert!(patched);
    assert!(
        warnings.iter().all(|w| !w.contains("earthly-remote")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(
            |w| w.contains("scratch volume earthly-tmp at /tmp/earthly in container buildkitd")
        ),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn scratch_path_inside_a_claim_gets_no_empty_dir() {
    // EARTHLY_TMP_DIR=/workspace/earthly lies inside the pod's /workspace volume.
    let body = review_with(|spec| {
        spec["containers"][0]["env"] = json!([
            {"name": "EARTHLY_TMP_DIR", "value": "/workspace/earthly"}
        ]);
        spec["containers"][0]["securityContext"] = json!({"privileged": true});
    });
    assert_eq!(mutate(&body).await, (Vec::new(), false));
}
