//! The plain-HTTP admin server: liveness, readiness and metrics. Kept off the TLS port so
//! probes and scrapes never need certificates and never compete with the apiserver's calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, Metrics};

/// Readiness: on once the webhook listener is bound and the config loaded, off as soon as
/// shutdown starts.
#[derive(Debug, Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    stopping: Option<CancellationToken>,
}

impl Health {
    /// The same readiness, which also turns off once `shutdown` fires.
    pub fn stopping_on(mut self, shutdown: CancellationToken) -> Self {
        self.stopping = Some(shutdown);
        self
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && !self.stopping.as_ref().is_some_and(|s| s.is_cancelled())
    }
}

#[derive(Clone)]
struct AdminState {
    health: Health,
    metrics: Arc<Metrics>,
}

/// The admin routes.
pub fn router(health: Health, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(scrape))
        .with_state(AdminState { health, metrics })
}

async fn readyz(State(s): State<AdminState>) -> (StatusCode, &'static str) {
    if s.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn scrape(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        s.metrics.encode(),
    )
}

/// Serves the admin routes until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    health: Health,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let app = router(health, metrics);
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!(%error, "admin server failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn status(health: &Health, path: &str) -> StatusCode {
        router(health.clone(), Arc::new(Metrics::new()))
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
            .status()
    }

    #[tokio::test]
    async fn not_ready_until_set_and_not_after_shutdown_starts() {
        let shutdown = CancellationToken::new();
        let health = Health::default().stopping_on(shutdown.clone());
        assert_eq!(
            status(&health, "/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.set_ready(true);
        assert_eq!(status(&health, "/readyz").await, StatusCode::OK);
        shutdown.cancel();
        assert_eq!(
            status(&health, "/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(&health, "/healthz").await, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics_text() {
        let resp = router(Health::default(), Arc::new(Metrics::new()))
            .oneshot(
                Request::get("/metrics")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], metrics::CONTENT_TYPE);
    }
}
