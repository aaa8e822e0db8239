//! Runs `review::review_body` (or, for comparison, a bare `serde_json::Value` parse) over a
//! captured AdmissionReview in a loop, for `valgrind --tool=callgrind` and `perf`. Instruction
//! counts from callgrind do not depend on machine load, unlike wall-clock benchmarks.
//!
//! `cargo build --profile dist --example profile_review`
//! `valgrind --tool=callgrind target/dist/examples/profile_review review 2000 [FIXTURE]`

use std::process::ExitCode;

use earthly_webhook::cluster::NoCluster;
use earthly_webhook::config::Config;
use earthly_webhook::review::{self, Action, Policy, Route};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "review".to_owned());
    let iterations: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let fixture = args.next().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/admission-reviews/pod-create-earthly-all-in-one-from-job.json"
        )
        .to_owned()
    });
    let body = match std::fs::read(&fixture) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {fixture}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let policy = match Policy::new(Config::default()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("policy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let route = Route {
        action: Action::Mutate,
        mode: None,
    };
    let mut bytes = 0usize;
    for _ in 0..iterations {
        match what.as_str() {
            "review" => {
                let r = rt.block_on(review::review_body(&policy, &NoCluster, route, &body));
                match r.map(|r| r.to_json()) {
                    Ok(Ok(json)) => bytes += json.len(),
                    other => {
                        eprintln!("review failed: {other:?}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            "value" => match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) => bytes += usize::from(v.is_object()),
                Err(e) => {
                    eprintln!("not JSON: {e}");
                    return ExitCode::FAILURE;
                }
            },
            other => {
                eprintln!("unknown mode {other:?}; use review or value");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{what}: {iterations} iterations, {bytes} bytes out");
    ExitCode::SUCCESS
}
