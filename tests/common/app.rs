//! The webhook application in-process, without TLS or a socket: the router driven with
//! `tower::ServiceExt::oneshot`, for the tests of what the rules answer. Transport (TLS, limits,
//! rotation, ALPN, shutdown) is tested over real TLS with `TestServer`.

use std::sync::Arc;

use earthly_webhook::metrics::Metrics;
use earthly_webhook::review::Policy;
use earthly_webhook::server::{AppState, router};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use super::Options;

/// The router with a policy and a cluster.
pub struct App {
    router: axum::Router,
}

impl App {
    /// The default config and no cluster.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Async like `TestServer::start_with`, so a test can switch between the two.
    pub async fn start_with(opts: Options) -> Self {
        let state = AppState {
            policy: Arc::new(Policy::new(opts.config).expect("policy")),
            cluster: opts.cluster,
            metrics: Arc::new(Metrics::new()),
        };
        Self {
            router: router(state, &opts.limits),
        }
    }

    /// POSTs a body the way the apiserver does and returns status and body.
    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> (StatusCode, Bytes) {
        // The apiserver always sends its timeout; paths that carry a query keep theirs.
        let uri = if path.contains('?') {
            path.to_owned()
        } else {
            format!("{path}?timeout=10s")
        };
        let request = Request::post(uri)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.into()))
            .expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, body)
    }

    /// POSTs a review and returns the decoded answer, asserting HTTP 200.
    pub async fn review(&self, path: &str, body: impl Into<Bytes>) -> Value {
        let (status, body) = self.post(path, body).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "body: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).expect("JSON answer")
    }

    /// Nothing to stop; here so a test reads the same with either harness.
    pub async fn stop(self) {}
}
