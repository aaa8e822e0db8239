//! The webhook's routes: which path reviews what, the transport limits around them, and the
//! handler that turns a body into an answer and records it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::record;
use crate::cluster::ClusterView;
use crate::config::Mode;
use crate::metrics::{Metrics, ReviewOutcome};
use crate::review::{self, Action, Policy, Route};

/// Every path the webhook serves (the chart's webhook configurations must use these).
pub const WEBHOOK_PATHS: &[&str] = &[
    "/mutate",
    "/mutate/enforce",
    "/mutate/warn",
    "/mutate/audit",
    "/validate",
    "/validate/enforce",
    "/validate/warn",
    "/validate/audit",
];

/// What the webhook handlers share.
#[derive(Clone)]
pub struct AppState {
    pub policy: Arc<Policy>,
    pub cluster: Arc<dyn ClusterView>,
    pub metrics: Arc<Metrics>,
}

/// Transport limits. Each protects the apiserver's call path from a slow or hostile peer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted; larger ones get 413 before they are read.
    pub max_body_bytes: usize,
    /// Time a client has to finish the TLS handshake and send request headers.
    pub header_read_timeout: Duration,
    /// Time one request may take, kept below the webhook's `timeoutSeconds` so the apiserver
    /// gets an answer rather than a timeout.
    pub request_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // The apiserver caps a request at 3 MiB (etcd's 1.5 MiB object limit, twice for
            // object and oldObject).
            max_body_bytes: 3 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(4),
            max_connections: 1024,
        }
    }
}

/// The webhook application, without transport: tests drive it with `tower::ServiceExt`.
pub fn router(state: AppState, limits: &Limits) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/mutate/{mode}", post(mutate_with_mode))
        .route("/validate", post(validate))
        .route("/validate/{mode}", post(validate_with_mode))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        // Refuses a declared Content-Length over the limit before reading any of the body, and
        // stops a chunked body as soon as it passes the limit.
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        // Covers reading the body too, so a client that trickles its body is cut off.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        // Outermost, so it also sees the answers of the limit and timeout layers.
        .layer(record::RecordLayer {
            metrics: state.metrics.clone(),
        })
        .with_state(state)
}

async fn mutate(State(s): State<AppState>, body: Bytes) -> Response {
    handle(&s, Action::Mutate, None, &body).await
}

async fn validate(State(s): State<AppState>, body: Bytes) -> Response {
    handle(&s, Action::Validate, None, &body).await
}

async fn mutate_with_mode(
    State(s): State<AppState>,
    Path(mode): Path<String>,
    body: Bytes,
) -> Response {
    handle(&s, Action::Mutate, Some(mode), &body).await
}

async fn validate_with_mode(
    State(s): State<AppState>,
    Path(mode): Path<String>,
    body: Bytes,
) -> Response {
    handle(&s, Action::Validate, Some(mode), &body).await
}

async fn handle(s: &AppState, action: Action, mode: Option<String>, body: &[u8]) -> Response {
    let mode = match mode.as_deref().map(|m| (m, Mode::parse(m))) {
        None => None,
        Some((_, Some(mode))) => Some(mode),
        Some((m, None)) => {
            return (
                StatusCode::NOT_FOUND,
                format!("unknown policy mode {m:?}; use enforce, warn or audit\n"),
            )
                .into_response();
        }
    };
    let started = Instant::now();
    // Boxed: the review's state is kilobytes (decoded pod, answer), and every layer around the
    // handler would otherwise move it by value; the load benchmark measured those copies at a
    // tenth of the CPU of a request.
    let review = Box::pin(review::review_body(
        &s.policy,
        s.cluster.as_ref(),
        Route { action, mode },
        body,
    ));
    match review.await {
        Ok(reviewed) => {
            let sum = &reviewed.summary;
            let outcome = ReviewOutcome::of(sum);
            tracing::info!(
                uid = sum.uid.as_str(),
                namespace = sum.namespace.as_deref().unwrap_or(""),
                name = sum.name.as_str(),
                kind = sum.kind.as_str(),
                operation = sum.operation,
                endpoint = action.as_str(),
                verdict = sum.verdict.as_str(),
                dry_run = sum.dry_run,
                duration_us = started.elapsed().as_micros() as u64,
                "reviewed"
            );
            let mut response = match reviewed.to_json() {
                Ok(json) => {
                    tracing::trace!(
                        uid = %sum.uid,
                        request = %String::from_utf8_lossy(body),
                        response = %String::from_utf8_lossy(&json),
                        "review bodies"
                    );
                    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
                }
                Err(error) => {
                    tracing::error!(%error, "cannot encode AdmissionReview");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "cannot encode AdmissionReview\n",
                    )
                        .into_response()
                }
            };
            response.extensions_mut().insert(outcome);
            response
        }
        Err(error) => {
            tracing::warn!(%error, endpoint = action.as_str(), "bad request body");
            tracing::trace!(request = %String::from_utf8_lossy(body), "unreadable body");
            (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response()
        }
    }
}
