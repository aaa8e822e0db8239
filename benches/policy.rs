//! Criterion benchmarks of the pure policy work on the captured fixture pods: detection,
//! mutation, pod validation, and a whole review from request bytes to response bytes.
//!
//! `cargo bench --bench policy`; times are per call.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use earthly_webhook::cluster::NoCluster;
use earthly_webhook::config::Config;
use earthly_webhook::mutate;
use earthly_webhook::review::{Action, Policy, Route, review_body};
use earthly_webhook::rules::footguns;
use k8s_openapi::api::core::v1::Pod;

const FIXTURES: &[(&str, &str)] = &[
    ("all_in_one", "pod-create-earthly-all-in-one-from-job.json"),
    ("buildkitd", "pod-create-buildkitd-from-replicaset.json"),
    (
        "remote_client",
        "pod-create-earthly-remote-client-from-job.json",
    ),
    ("unrelated", "pod-create-unrelated-multicontainer.json"),
];

fn body(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/data/admission-reviews/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn pod(name: &str) -> Pod {
    let review: serde_json::Value = serde_json::from_slice(&body(name)).expect("fixture");
    serde_json::from_value(review["request"]["object"].clone()).expect("pod")
}

fn policy(c: &mut Criterion) {
    let policy = Policy::new(Config::default()).expect("policy");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for (label, file) in FIXTURES {
        let pod = pod(file);
        let spec = pod.spec.clone().expect("spec");
        let annotations = pod.metadata.annotations.clone();
        let found = policy
            .detector()
            .classify(annotations.as_ref(), &spec)
            .expect("classify");
        c.bench_function(&format!("detect/{label}"), |b| {
            b.iter(|| {
                policy
                    .detector()
                    .classify(black_box(annotations.as_ref()), black_box(&spec))
            })
        });
        c.bench_function(&format!("mutate/{label}"), |b| {
            b.iter(|| {
                mutate::mutate(
                    black_box(&spec),
                    "/spec",
                    black_box(&found),
                    &policy.config().mutation,
                )
            })
        });
        c.bench_function(&format!("validate_pod/{label}"), |b| {
            b.iter(|| footguns::check("Pod ci/p", "spec", black_box(&spec), black_box(&found)))
        });
        let bytes = body(file);
        for (action, name) in [(Action::Mutate, "mutate"), (Action::Validate, "validate")] {
            let route = Route { action, mode: None };
            c.bench_function(&format!("review_{name}/{label}"), |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        let r = review_body(&policy, &NoCluster, route, black_box(&bytes))
                            .await
                            .expect("review");
                        r.to_json().expect("json")
                    })
                })
            });
        }
    }
}

criterion_group!(benches, policy);
criterion_main!(benches);
