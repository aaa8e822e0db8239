//! What must hold for any request body, checked by the fuzz target (`fuzz/`) and by the
//! corpus replay and mutation tests (`tests/fuzz_corpus.rs`) on the stable toolchain.
//!
//! For every byte string: no panic; an answer is a well-formed `admission.k8s.io/v1`
//! AdmissionReview carrying the request's uid, a denial carries no patch, and a patch is a JSON
//! patch that applies to the request's object, after which a second review patches nothing;
//! and the order of the request's fields does not change the answer (the routing peek reads
//! them in the apiserver's order, and must never decide on a partial key).

use std::future::Future;
use std::sync::LazyLock;

use base64::Engine as _;
use earthly_webhook::cluster::{ClusterView, NoCluster};
use earthly_webhook::config::Config;
use earthly_webhook::config::Mode;
use earthly_webhook::review::{self, Action, BodyError, Policy, Reviewed, Route, Verdict};
use serde_json::Value;

/// Every endpoint and mode a body can be sent to.
pub const ROUTES: [Route; 4] = [
    Route {
        action: Action::Mutate,
        mode: None,
    },
    Route {
        action: Action::Validate,
        mode: None,
    },
    Route {
        action: Action::Validate,
        mode: Some(Mode::Warn),
    },
    Route {
        action: Action::Validate,
        mode: Some(Mode::Audit),
    },
];

thread_local! {
    /// Reviews run inside tokio in the server and in `check` (lookups are bounded with tokio's
    /// timer), so the oracle drives them on a tokio runtime too.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
}

/// Runs a review to completion.
pub fn run<F: Future>(future: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(future))
}

/// The request's uid, if the body is JSON with a string `request.uid`.
fn request_uid(body: &Value) -> Option<&str> {
    body.get("request")?.get("uid")?.as_str()
}

/// Checks one body on one route; panics with a message on any broken property.
pub fn check(policy: &Policy, cluster: &dyn ClusterView, route: Route, body: &[u8]) {
    let answer = run(review::review_body(policy, cluster, route, body));
    if let Ok(reviewed) = &answer
        && reviewed.summary.verdict != Verdict::Error
        && let Some(reordered) = reordered(body)
        && let Ok(again) = run(review::review_body(policy, cluster, route, &reordered))
    {
        assert_eq!(
            String::from_utf8_lossy(&again.to_json().expect("json")),
            String::from_utf8_lossy(&reviewed.to_json().expect("json")),
            "the order of the request's fields changed the answer"
        );
        assert_eq!(again.summary, reviewed.summary);
    }
    match answer {
        Ok(reviewed) => well_formed(policy, cluster, route, body, &reviewed),
        Err(BodyError::Empty) => assert!(body.iter().all(u8::is_ascii_whitespace)),
        Err(_) => {}
    }
}

/// The body with the fields of its request in reverse order (the object before the resource
/// and operation), when it is JSON with a request object.
pub fn reordered(body: &[u8]) -> Option<Vec<u8>> {
    let mut review: Value = serde_json::from_slice(body).ok()?;
    let request = review.get_mut("request")?.as_object_mut()?;
    let reversed: serde_json::Map<String, Value> =
        std::mem::take(request).into_iter().rev().collect();
    *request = reversed;
    serde_json::to_vec(&review).ok()
}

fn well_formed(
    policy: &Policy,
    cluster: &dyn ClusterView,
    route: Route,
    body: &[u8],
    reviewed: &Reviewed,
) {
    let json = reviewed.to_json().expect("an answer encodes");
    let wire: Value = serde_json::from_slice(&json).expect("an answer is JSON");
    assert_eq!(wire["apiVersion"], review::ADMISSION_API_VERSION);
    assert_eq!(wire["kind"], "AdmissionReview");
    let response = &wire["response"];
    let uid = response["uid"].as_str().expect("response.uid is a string");
    assert!(
        !uid.is_empty(),
        "an answer without uid is refused by the apiserver"
    );
    assert_eq!(uid, reviewed.summary.uid);
    let allowed = response["allowed"]
        .as_bool()
        .expect("response.allowed is a bool");
    // A body whose bytes are not all JSON a `Value` reads (fields the rules skip are not
    // checked) has no Value to compare with.
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    if let Some(expected) = request_uid(&request) {
        assert_eq!(uid, expected, "the answer carries another uid");
    }
    let Some(patch) = response.get("patch") else {
        return;
    };
    assert!(allowed, "a denial carries a patch");
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch.as_str().expect("patch is a string"))
        .expect("patch is base64");
    let ops: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch is a JSON patch");
    let mut object = request["request"]["object"].clone();
    json_patch::patch(&mut object, &ops).expect("the patch applies to the object");
    // The patched object, sent again, needs nothing more.
    let mut again = request.clone();
    again["request"]["object"] = object;
    let again = serde_json::to_vec(&again).expect("JSON");
    let second = run(review::review_body(policy, cluster, route, &again))
        .expect("the patched review is readable");
    assert!(
        second.response().patch.is_none(),
        "a second pass patched again: {:?}",
        second.summary.patch_operations
    );
}

/// The defaults, and a config that switches on every mutation rule.
pub static POLICIES: LazyLock<[Policy; 2]> = LazyLock::new(|| {
    let full = Config::from_yaml(
        r#"
mutation:
  scratchVolume: {name: scratch, source: {emptyDir: {sizeLimit: 50Gi}}}
  cniMtu: 1450
  tolerations:
    - {key: earthly.dev/privileged, operator: Exists, effect: NoSchedule}
  nodeSelector: {earthly.dev/pool: privileged}
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{key: earthly.dev/pool, operator: In, values: [privileged]}]
"#,
        "test",
    )
    .expect("config");
    [
        Policy::new(Config::default()).expect("policy"),
        Policy::new(full).expect("policy"),
    ]
});

/// Checks `body` with every policy at every route.
pub fn check_everywhere(body: &[u8]) {
    for policy in POLICIES.iter() {
        for route in ROUTES {
            check(policy, &NoCluster, route, body);
        }
    }
}
