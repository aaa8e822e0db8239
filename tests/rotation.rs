//! Certificate rotation under load: the files are swapped the way the kubelet updates a mounted
//! Secret while clients keep sending reviews; no request fails and new handshakes get the new
//! certificate.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Options, TestServer, client_for, fixture, post_with, write_certs};
use hyper::StatusCode;

const REVIEW: &str = "pod-create-earthly-all-in-one-from-job.json";

/// Replaces a file atomically with a new inode, as a Secret volume update does.
fn swap_in(from: &std::path::Path, to: &std::path::Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).expect("copy");
    std::fs::rename(&tmp, to).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_drops_nothing_and_serves_the_new_certificate() {
    let server = TestServer::start_with(Options {
        reload_interval: Duration::from_millis(20),
        ..Options::default()
    })
    .await;
    let staging = tempfile::tempdir().expect("tempdir");
    let (new_ca, new_files) = write_certs(staging.path(), "rotated CA");
    let url = server.url("/mutate?timeout=10s");
    let body = bytes::Bytes::from(fixture(REVIEW));

    // Clients trust both CAs, as the apiserver does while a caBundle holds old and new.
    let both = format!("{}{}", server.ca_pem, new_ca);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for fresh_connections in [false, true] {
        let (url, body, both) = (url.clone(), body.clone(), both.clone());
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let keep_alive = client_for(&both, false);
            while !stop.load(Ordering::Relaxed) {
                // One client reuses its connection; the other handshakes for every request.
                let client = if fresh_connections {
                    client_for(&both, false)
                } else {
                    keep_alive.clone()
                };
                let (status, _) = post_with(&client, &url, body.clone()).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if status != StatusCode::OK {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // Wait until traffic flows, then rotate: key first, so the watcher also sees the
    // mismatched half-written pair and must keep serving the old one.
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while sent.load(Ordering::Relaxed) < 20 {
        tick.tick().await;
    }
    swap_in(&new_files.key, &server.files.key);
    swap_in(&new_files.cert, &server.files.cert);

    // Poll with a client that trusts only the new CA until a handshake succeeds.
    let only_new = client_for(&new_ca, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let served_new = loop {
        let req = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(body.clone()))
            .expect("request");
        match only_new.request(req).await {
            Ok(resp) if resp.status() == StatusCode::OK => break true,
            _ if tokio::time::Instant::now() > deadline => break false,
            _ => {
                tick.tick().await;
            }
        }
    };
    let before_stop = sent.load(Ordering::Relaxed);
    // Keep the load running a little past the swap so both clients cross it.
    while sent.load(Ordering::Relaxed) < before_stop + 20 {
        tick.tick().await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }

    assert!(served_new, "the new certificate was never served");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during rotation"
    );
    assert!(sent.load(Ordering::Relaxed) >= 40);
    server.stop().await;
}
