//! Criterion benchmarks of the decisions on the captured pods: detection, the mutation patch,
//! pod validation, and the whole `review_body` (decode, decide, encode) on both the fast path and
//! the general one. Pure functions, no server: `cargo bench --bench policy`.
//!
//! Times are wall-clock per call on a shared machine; for load-independent numbers run
//! `examples/profile_review.rs` under callgrind (docs/benchmarks.md).

use std::hint::black_box;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use earthly_webhook::cluster::NoCluster;
use earthly_webhook::config::Config;
use earthly_webhook::detect::Detector;
use earthly_webhook::mutate;
use earthly_webhook::review::{self, Action, Policy, Route};
use earthly_webhook::validate;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

const FIXTURES: &[(&str, &str)] = &[
    ("all-in-one", "pod-create-earthly-all-in-one-from-job.json"),
    ("buildkitd", "pod-create-buildkitd-from-replicaset.json"),
    ("unrelated", "pod-create-unrelated-multicontainer.json"),
];

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/admission-reviews")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn pod_of(body: &[u8]) -> Pod {
    let review: Value = serde_json::from_slice(body).expect("fixture JSON");
    serde_json::from_value(review["request"]["object"].clone()).expect("a Pod")
}

/// Polls a review to completion: with no cluster behind it nothing ever waits.
fn run<F: std::future::Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a review without a cluster waited"),
    }
}

fn benches(c: &mut Criterion) {
    let config = Config::default();
    let detector = Detector::new(&config.detection).expect("detector");
    let policy = Policy::new(config.clone()).expect("policy");
    for (label, file) in FIXTURES {
        let body = fixture(file);
        let pod = pod_of(&body);
        let spec = pod.spec.clone().expect("spec");
        let annotations = pod.metadata.annotations.clone();
        let found = detector
            .classify(annotations.as_ref(), &spec)
            .expect("classify");

        c.bench_function(&format!("detect/{label}"), |b| {
            b.iter(|| detector.classify(black_box(annotations.as_ref()), black_box(&spec)))
        });
        c.bench_function(&format!("mutate/{label}"), |b| {
            b.iter(|| {
                mutate::mutate(
                    black_box(&spec),
                    "/spec",
                    black_box(&found),
                    &config.mutation,
                )
            })
        });
        c.bench_function(&format!("validate/{label}"), |b| {
            b.iter(|| validate::pod::check("Pod ci/p", "spec", black_box(&spec), black_box(&found)))
        });
        for (action, route) in [
            (
                "mutate",
                Route {
                    action: Action::Mutate,
                    mode: None,
                },
            ),
            (
                "validate",
                Route {
                    action: Action::Validate,
                    mode: None,
                },
            ),
        ] {
            c.bench_function(&format!("review_body/{action}/{label}"), |b| {
                b.iter(|| {
                    let r = run(review::review_body(
                        &policy,
                        &NoCluster,
                        route,
                        black_box(&body),
                    ))
                    .expect("review");
                    r.to_json().expect("json")
                })
            });
        }
        c.bench_function(&format!("review_body_general/mutate/{label}"), |b| {
            let route = Route {
                action: Action::Mutate,
                mode: None,
            };
            b.iter(|| {
                let r = run(review::review_body_general(
                    &policy,
                    &NoCluster,
                    route,
                    black_box(&body),
                ))
                .expect("review");
                r.to_json().expect("json")
            })
        });
    }
    // The yardstick the load benchmark's reference server does per request.
    let body = fixture(FIXTURES[0].1);
    c.bench_function("serde_json_value/all-in-one", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&body)).expect("json"))
    });
}

criterion_group! {
    name = policy;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = benches
}
criterion_main!(policy);
