//! The request metrics layer: every answer is measured here, reviews and the refusals of the
//! limit and timeout layers alike. A plain tower layer rather than `axum::middleware::from_fn`,
//! which clones the boxed inner service and boxes a future on every request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::http::Request;
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::metrics::{Metrics, ReviewOutcome};
use crate::review::Action;

/// Wraps a service in [`Record`].
#[derive(Clone)]
pub(super) struct RecordLayer {
    pub metrics: Arc<Metrics>,
}

impl<S> Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Records each answer of `inner` in the request metrics.
#[derive(Clone)]
pub(super) struct Record<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for Record<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Recorded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        Recorded {
            endpoint: endpoint_of(request.uri().path()),
            started: Instant::now(),
            metrics: self.metrics.clone(),
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// The answer of [`Record`]'s inner service, recorded when it is ready.
    pub(super) struct Recorded<F> {
        #[pin]
        inner: F,
        endpoint: &'static str,
        started: Instant,
        metrics: Arc<Metrics>,
    }
}

impl<F, E> Future for Recorded<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // axum's routes never fail (their error type is `Infallible`); an error passes through.
        let mut response = ready!(this.inner.poll(cx))?;
        let outcome = response.extensions_mut().remove::<ReviewOutcome>();
        this.metrics.record_request(
            this.endpoint,
            response.status().as_u16(),
            outcome.as_ref(),
            this.started.elapsed(),
        );
        Poll::Ready(Ok(response))
    }
}

/// The endpoint label of a path (`/mutate/warn` is `mutate`).
fn endpoint_of(path: &str) -> &'static str {
    if path.starts_with("/mutate") {
        Action::Mutate.as_str()
    } else if path.starts_with("/validate") {
        Action::Validate.as_str()
    } else {
        "other"
    }
}
