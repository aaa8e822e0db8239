//! Lookup benchmark (issue 17): how the reviews that list a namespace (a bare buildkitd pod
//! CREATE at /validate: the Services in front of it, then the buildkitd pods behind each) cost
//! as the namespace grows. Not a test: it measures; `scripts/bench-lookups.sh` runs it.
//!
//! `lookup_bench run [N...]` (default N = 10 1000 10000) starts, for each N, a fake API server
//! (`lookup_bench api N`, its own process on 127.0.0.1, plain HTTP) serving namespace `big`
//! with N Services and N buildkitd pods, and `small` with 10 of each, built from objects a real
//! kube-apiserver returned (tests/data/apiserver-responses/). Each scenario then runs in a
//! fresh driver process (`lookup_bench drive ...`), so its peak RSS is its own: the server's
//! [`KubeCluster`] and [`Policy`] on a one-worker runtime as shipped, one warm-up review in
//! `small`, then the measured reviews in `big`. It reports per review the process CPU time
//! (every thread, from /proc/self/task/*/schedstat), allocations and allocated bytes (a
//! counting wrapper around mimalloc, the server's allocator), RSS growth over the phase (VmRSS)
//! and peak RSS (VmHWM), and how many list calls the API answered.

use std::convert::Infallible;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use earthly_webhook::cluster::KubeCluster;
use earthly_webhook::config::{self, Config};
use earthly_webhook::review::{self, Action, Policy, Route};
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mimalloc::MiMalloc;
use serde_json::{Value, json};
use stats_alloc::StatsAlloc;

#[global_allocator]
static GLOBAL: StatsAlloc<MiMalloc> = StatsAlloc::new(MiMalloc);

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/apiserver-responses"
);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("api") => api(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10)),
        Some("drive") => drive(&args[1..]),
        Some("run") | None => run(args.get(1..).unwrap_or_default()),
        Some(other) => Err(format!("unknown mode {other:?}: use run, api or drive")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lookup_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_json(name: &str) -> Result<Value, String> {
    let path = format!("{DATA}/{name}");
    let text = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_slice(&text).map_err(|e| format!("{path}: {e}"))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    // As `serve` runs by default (--worker-threads 1).
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// The fake API

/// The items of one namespace, each pre-rendered, with the labels a labelSelector matches.
struct Namespace {
    services: Vec<Bytes>,
    pods: Vec<(Bytes, Value)>,
}

fn namespace(name: &str, n: usize) -> Result<Namespace, String> {
    let service = read_json("services-list.json")?["items"][0].clone();
    let pod = read_json("pods-list-page1-limit2.json")?["items"][0].clone();
    let mut services = Vec::with_capacity(n);
    let mut pods = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = service.clone();
        s["metadata"]["name"] = json!(format!("svc-{i}"));
        s["metadata"]["namespace"] = json!(name);
        // One Service in front of the buildkitd pods; the others select other apps.
        if i > 0 {
            s["spec"]["selector"] = json!({"app": format!("web-{i}")});
        }
        services.push(Bytes::from(
            serde_json::to_vec(&s).map_err(|e| e.to_string())?,
        ));
        let mut p = pod.clone();
        p["metadata"]["name"] = json!(format!("earthly-buildkitd-{i}"));
        p["metadata"]["namespace"] = json!(name);
        let labels = p["metadata"]["labels"].clone();
        pods.push((
            Bytes::from(serde_json::to_vec(&p).map_err(|e| e.to_string())?),
            labels,
        ));
    }
    Ok(Namespace { services, pods })
}

struct Api {
    big: Namespace,
    small: Namespace,
    lists: AtomicUsize,
}

fn query<'a>(uri: &'a hyper::Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv: &'a str| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.replace("%3D", "=").replace("%2C", ","))
    })
}

impl Api {
    fn answer(&self, uri: &hyper::Uri) -> Response<Full<Bytes>> {
        if uri.path() == "/stats" {
            let n = self.lists.load(Ordering::SeqCst);
            return Response::new(Full::new(Bytes::from(n.to_string())));
        }
        let parts: Vec<&str> = uri.path().split('/').collect();
        let (ns, kind) = match parts.as_slice() {
            ["", "api", "v1", "namespaces", ns, kind] => (*ns, *kind),
            _ => return status(404),
        };
        let ns = match ns {
            "big" => &self.big,
            "small" => &self.small,
            _ => return status(404),
        };
        self.lists.fetch_add(1, Ordering::SeqCst);
        let selector: Vec<(String, String)> = query(uri, "labelSelector")
            .map(|s| {
                s.split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let items: Vec<&Bytes> = match kind {
            "services" => ns.services.iter().collect(),
            "pods" => ns
                .pods
                .iter()
                .filter(|(_, labels)| selector.iter().all(|(k, v)| labels[k] == json!(v)))
                .map(|(b, _)| b)
                .collect(),
            _ => return status(404),
        };
        let start: usize = query(uri, "continue")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let limit: usize = query(uri, "limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(usize::MAX);
        let end = start.saturating_add(limit).min(items.len());
        let next = if end < items.len() {
            end.to_string()
        } else {
            String::new()
        };
        let mut body = format!(
            r#"{{"apiVersion":"v1","kind":"List","metadata":{{"resourceVersion":"1","continue":"{next}"}},"items":["#
        )
        .into_bytes();
        for (i, item) in items[start.min(end)..end].iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(item);
        }
        body.extend_from_slice(b"]}");
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/json"),
        );
        r
    }
}

fn status(code: u16) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"{}")));
    *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::NOT_FOUND);
    r
}

fn api(n: usize) -> Result<(), String> {
    let api = Arc::new(Api {
        big: namespace("big", n)?,
        small: namespace("small", 10)?,
        lists: AtomicUsize::new(0),
    });
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        loop {
            let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let api = api.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<_>| {
                    let r = api.answer(req.uri());
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The driver

/// A bare buildkitd pod being created in `namespace`, as the apiserver sends it to /validate.
fn bare_pod_review(namespace: &str, i: usize) -> Result<Vec<u8>, String> {
    let mut pod = read_json("pods-list-page1-limit2.json")?["items"][0].clone();
    let meta = pod["metadata"].as_object_mut().ok_or("pod metadata")?;
    for key in [
        "ownerReferences",
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
    ] {
        meta.remove(key);
    }
    let name = format!("bare-buildkitd-{i}");
    meta.insert("name".to_owned(), json!(name));
    meta.insert("namespace".to_owned(), json!(namespace));
    pod.as_object_mut().ok_or("pod")?.remove("status");
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": format!("uid-{i}"), "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": name, "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "bench"}, "object": pod, "oldObject": null,
            "dryRun": false, "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}
    }))
    .map_err(|e| e.to_string())
}

/// CPU time of every thread of this process, in nanoseconds.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// `drive URL REVIEWS CONCURRENCY TTL_SECONDS`: prints one JSON line of measurements.
fn drive(args: &[String]) -> Result<(), String> {
    let [url, reviews, concurrency, ttl] = args else {
        return Err("drive URL REVIEWS CONCURRENCY TTL_SECONDS".to_owned());
    };
    let parse = |s: &str| s.parse::<usize>().map_err(|e| format!("{s}: {e}"));
    let (reviews, concurrency, ttl) = (parse(reviews)?, parse(concurrency)?.max(1), parse(ttl)?);
    let rt = runtime()?;
    rt.block_on(async move {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::Config::new(url.parse().map_err(|e| format!("{url}: {e}"))?);
        let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
        let settings = config::Cluster {
            cache_ttl_seconds: ttl as u64,
            ..config::Cluster::default()
        };
        let cluster = Arc::new(KubeCluster::new(client.clone(), &settings));
        let policy = Arc::new(Policy::new(Config::default()).map_err(|e| e.to_string())?);
        let route = Route {
            action: Action::Validate,
            mode: None,
        };
        let one = |ns: &'static str, i: usize| {
            let (cluster, policy) = (cluster.clone(), policy.clone());
            async move {
                let body = bare_pod_review(ns, i)?;
                let r = review::review_body(&policy, cluster.as_ref(), route, &body)
                    .await
                    .map_err(|e| format!("{e:?}"))?;
                // The rule must have answered from the lookups, not from a failed one.
                match r.response().allowed {
                    false if r.response().result.message.contains("second") => Ok(()),
                    _ => Err(format!("unexpected answer: {:?}", r.response())),
                }
            }
        };
        one("small", 0).await?;
        let stats = |c: &kube::Client| {
            let c = c.clone();
            async move {
                let req = hyper::Request::get("/stats")
                    .body(Vec::new())
                    .map_err(|e| e.to_string())?;
                c.request_text(req)
                    .await
                    .map_err(|e| e.to_string())?
                    .parse::<usize>()
                    .map_err(|e| e.to_string())
            }
        };
        let lists0 = stats(&client).await?;
        let (rss0, cpu0, alloc0) = (status_kib("VmRSS:"), cpu_ns(), GLOBAL.stats());
        let started = Instant::now();
        let mut i = 1;
        while i <= reviews {
            let mut batch = tokio::task::JoinSet::new();
            for k in i..(i + concurrency).min(reviews + 1) {
                batch.spawn(one("big", k));
            }
            i += concurrency;
            while let Some(r) = batch.join_next().await {
                r.map_err(|e| e.to_string())??;
            }
        }
        let wall = started.elapsed();
        let (cpu1, alloc1) = (cpu_ns(), GLOBAL.stats());
        let (rss1, hwm) = (status_kib("VmRSS:"), status_kib("VmHWM:"));
        let lists = stats(&client).await? - lists0;
        let per = |x: f64| x / reviews as f64;
        println!(
            "{}",
            json!({
                "reviews": reviews, "concurrency": concurrency, "ttl": ttl,
                "cpu_us": per((cpu1 - cpu0) as f64 / 1000.0),
                "wall_ms": per(wall.as_secs_f64() * 1000.0),
                "allocs": per((alloc1.allocations - alloc0.allocations) as f64),
                "alloc_kib": per((alloc1.bytes_allocated - alloc0.bytes_allocated) as f64 / 1024.0),
                "rss_growth_kib": rss1 as i64 - rss0 as i64,
                "peak_rss_kib": hwm,
                "list_calls": lists,
            })
        );
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// The orchestration

struct Scenario {
    name: &'static str,
    reviews: usize,
    concurrency: usize,
    ttl: usize,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "sequential, cache as shipped (5 s)",
        reviews: 200,
        concurrency: 1,
        ttl: 5,
    },
    Scenario {
        name: "sequential, no cache (every review lists)",
        reviews: 40,
        concurrency: 1,
        ttl: 0,
    },
    Scenario {
        name: "8 concurrent, cold cache",
        reviews: 8,
        concurrency: 8,
        ttl: 5,
    },
];

fn run(sizes: &[String]) -> Result<(), String> {
    let sizes: Vec<usize> = if sizes.is_empty() {
        vec![10, 1000, 10000]
    } else {
        sizes.iter().filter_map(|s| s.parse().ok()).collect()
    };
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    println!(
        "| N | scenario | CPU µs/review | allocs/review | KiB allocated/review | RSS growth KiB | peak RSS KiB | list calls |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let mut server = Command::new(&me)
            .args(["api", &n.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        let stdout = server.stdout.take().ok_or("api stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .map_err(|e| e.to_string())?;
        let url = line.trim().to_owned();
        let mut outcome = Ok(());
        for s in SCENARIOS {
            let out = Command::new(&me)
                .args(["drive", &url])
                .args([s.reviews, s.concurrency, s.ttl].map(|x| x.to_string()))
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                outcome = Err(format!(
                    "N={n} {}: {}",
                    s.name,
                    String::from_utf8_lossy(&out.stderr)
                ));
                break;
            }
            let m: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            println!(
                "| {n} | {} | {:.0} | {:.0} | {:.1} | {} | {} | {} |",
                s.name,
                m["cpu_us"].as_f64().unwrap_or(f64::NAN),
                m["allocs"].as_f64().unwrap_or(f64::NAN),
                m["alloc_kib"].as_f64().unwrap_or(f64::NAN),
                m["rss_growth_kib"],
                m["peak_rss_kib"],
                m["list_calls"],
            );
        }
        let _ = server.kill();
        let _ = server.wait();
        outcome?;
    }
    Ok(())
}
