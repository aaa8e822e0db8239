//! Measures `audit` at scale: a scan of 20 namespaces of 500 pods each (10,000 pods) served by
//! a local fake apiserver, with the recorded objects of a real one (tests/data/
//! apiserver-responses) copied under new names. Prints the wall time of the scan and the
//! process's peak RSS (`VmHWM`). Numbers and method: docs/audit.md.
//!
//! `cargo run --example audit_scale [NAMESPACES] [PODS_PER_NAMESPACE] [PAGE_SIZE]`

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use earthly_webhook::audit::scope::{Requested, Selector};
use earthly_webhook::audit::{self, ScanOptions};
use hyper::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

// As the binary: the allocator changes both the time and the peak RSS.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One bare runner pod in this many: the others belong to the buildkitd ReplicaSet.
const BARE_EVERY: usize = 10;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/data/apiserver-responses/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The recorded namespace, scaled: what each collection holds, by resource name.
struct World {
    namespaces: usize,
    pods: usize,
    owned_pod: Value,
    bare_pod: Value,
    lists: Vec<(&'static str, Value)>,
}

impl World {
    fn new(namespaces: usize, pods: usize) -> Self {
        let owned_pod = fixture("pods-list-page1-limit2.json")["items"][0].clone();
        let cronjob = fixture("cronjobs-list.json")["items"][0].clone();
        // A bare earthly runner pod, from the CronJob's template.
        let template = &cronjob["spec"]["jobTemplate"]["spec"]["template"];
        let bare_pod = json!({"metadata": {"name": "runner", "labels": {"app": "ci"}},
            "spec": template["spec"], "status": {"phase": "Pending"}});
        let lists = [
            ("deployments", "deployments-list.json"),
            ("replicasets", "replicasets-list.json"),
            ("services", "services-list.json"),
            ("cronjobs", "cronjobs-list.json"),
            (
                "horizontalpodautoscalers",
                "horizontalpodautoscalers-v2-list.json",
            ),
        ]
        .into_iter()
        .map(|(r, f)| (r, fixture(f)))
        .collect();
        Self {
            namespaces,
            pods,
            owned_pod,
            bare_pod,
            lists,
        }
    }

    fn pod(&self, ns: &str, i: usize) -> Value {
        let mut pod = if i.is_multiple_of(BARE_EVERY) {
            self.bare_pod.clone()
        } else {
            self.owned_pod.clone()
        };
        pod["metadata"]["name"] = json!(format!("pod-{i}"));
        pod["metadata"]["namespace"] = json!(ns);
        pod["metadata"]["uid"] = json!(format!("{ns}-{i}"));
        pod
    }

    /// The answer to one GET, paged by `limit` with the offset as the continue token.
    fn answer(&self, path: &str, query: &str) -> Value {
        let param = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                .and_then(|v| v.parse::<usize>().ok())
        };
        let segments: Vec<&str> = path.split('/').collect();
        if path == "/api/v1/namespaces" {
            let items: Vec<Value> = (0..self.namespaces)
                .map(|n| {
                    json!({"metadata": {"name": format!("ci-{n:02}"), "labels": {
                    "earthly.dev/webhook": "enabled", "earthly.dev/policy": "enforce"}}})
                })
                .collect();
            return json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": items});
        }
        let (ns, resource) = (segments[segments.len() - 2], segments[segments.len() - 1]);
        if resource == "pods" {
            let start = param("continue").unwrap_or(0);
            let end = (start + param("limit").unwrap_or(self.pods)).min(self.pods);
            let items: Vec<Value> = (start..end).map(|i| self.pod(ns, i)).collect();
            let token = if end < self.pods {
                end.to_string()
            } else {
                String::new()
            };
            return json!({"kind": "PodList", "apiVersion": "v1",
                "metadata": {"continue": token}, "items": items});
        }
        match self.lists.iter().find(|(r, _)| *r == resource) {
            Some((_, list)) => list.clone(),
            None => json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}),
        }
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let namespaces = args.next().and_then(Result::ok).unwrap_or(20);
    let pods = args.next().and_then(Result::ok).unwrap_or(500);
    let page_size = args.next().and_then(Result::ok).unwrap_or(500);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let world = Arc::new(World::new(namespaces, pods));
    let service = tower::service_fn(move |request: Request<Body>| {
        let world = Arc::clone(&world);
        async move {
            let uri = request.uri();
            let body = world.answer(uri.path(), uri.query().unwrap_or(""));
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            Ok::<_, Infallible>(Response::new(Body::from(bytes)))
        }
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let policy = match earthly_webhook::check::check_policy(None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("policy: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let options = ScanOptions {
        requested: Requested::Selected,
        selector: Selector::default(),
        page_size: u32::try_from(page_size).unwrap_or(500),
        write_reports: false,
        progress: false,
    };
    let started = Instant::now();
    let scan = runtime.block_on(async {
        let client = kube::Client::new(service, "default");
        audit::scan(client, &policy, &options).await
    });
    let elapsed = started.elapsed();
    let scan = match scan {
        Ok(s) => s,
        Err(e) => {
            eprintln!("scan failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let totals = audit::output::totals(&scan);
    println!(
        "{namespaces} namespaces x {pods} pods (page size {page_size}): {} objects judged, {} violations, {} mutations in {:.2} s; peak RSS {} KiB",
        totals.objects,
        totals.violations,
        totals.mutations,
        elapsed.as_secs_f64(),
        peak_rss_kib().map_or_else(|| "unknown".to_owned(), |k| k.to_string()),
    );
    ExitCode::SUCCESS
}
