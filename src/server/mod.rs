//! The HTTPS webhook server and the plain-HTTP admin server around the review module.

pub mod admin;
mod record;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::cluster::ClusterView;
use crate::config::Mode;
use crate::metrics::{ConnectionResult, MeteredCluster, Metrics, ReviewOutcome};
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

/// Keeps a timer due within a second until `shutdown`. Every request arms two timers (header
/// read and request timeouts, seconds away); when tokio's timer wheel holds no earlier one, each
/// arming wakes the parked runtime thread that drives timers, one futex or eventfd write and a
/// context switch per request on a quiet server (strace at one connection: 0.4 futex and 0.24
/// write per request more than the reference server). With this timer pending, the new ones are
/// never the earliest and wake no one; it costs one wake-up a second.
async fn timer_anchor(shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` fires, then lets in-flight requests
/// finish for up to `grace`.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    // The protocol is the one ALPN agreed on, not sniffed from the first bytes: sniffing waits
    // for bytes before HTTP/1.1's header read timeout starts, so a client that never spoke would
    // hold its connection slot for ever.
    let http1 = builder.clone().http1_only();
    let http2 = builder.http2_only();
    let service = TowerToHyperService::new(app);
    tokio::spawn(timer_anchor(shutdown.clone()));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = shutdown.cancelled() => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Without TCP_NODELAY small HTTP/2 frames wait for delayed ACKs (~40 ms per round trip).
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let acceptor = acceptor.clone();
        let (http1, http2) = (http1.clone(), http2.clone());
        let service = service.clone();
        let watcher = graceful.watcher();
        let metrics = metrics.clone();
        let first_bytes_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let _open = metrics.open_connection();
            let stream = match tokio::time::timeout(first_bytes_timeout, acceptor.accept(tcp)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(error)) => {
                    metrics.record_connection(ConnectionResult::HandshakeFailed);
                    tracing::debug!(%error, %peer, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics.record_connection(ConnectionResult::HandshakeTimedOut);
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            metrics.record_connection(ConnectionResult::Served);
            let result = if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                // HTTP/2 has no header read timeout: bound the wait for the client's preface.
                let stream = match Primed::read_first(stream, first_bytes_timeout).await {
                    Ok(s) => s,
                    Err(error) => {
                        tracing::debug!(%error, %peer, "HTTP/2 client sent nothing");
                        return;
                    }
                };
                let conn = http2
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                watcher.watch(conn).await
            } else {
                let conn = http1
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                watcher.watch(conn).await
            };
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "shutdown deadline reached; closing open connections"),
    }
}

/// A stream whose first bytes were read ahead, to bound how long a client may stay silent, and
/// are handed to HTTP before the rest.
struct Primed<S> {
    head: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> Primed<S> {
    /// Waits up to `timeout` for the first bytes; a client that closes or stays silent is an
    /// error.
    async fn read_first(mut inner: S, timeout: Duration) -> std::io::Result<Self> {
        use tokio::io::AsyncReadExt as _;
        let mut head = vec![0; 4096];
        let n = match tokio::time::timeout(timeout, inner.read(&mut head)).await {
            Ok(r) => r?,
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        };
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.truncate(n);
        Ok(Self {
            head,
            pos: 0,
            inner,
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Primed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.head.len() {
            let n = (this.head.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Primed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Fires `close` `delay` after `shutdown`. In between, readiness is off but the webhook keeps
/// accepting: the endpoints controller, kube-proxy and the apiserver's endpoint resolution take
/// a few seconds to stop sending to a terminating pod, and a closed listener would refuse what
/// they still send (the apiserver turns that into a denied pod under `failurePolicy: Fail`).
async fn close_after_delay(shutdown: CancellationToken, delay: Duration, close: CancellationToken) {
    shutdown.cancelled().await;
    tracing::info!(
        ?delay,
        "shutting down: not ready; still serving until endpoints drop this pod"
    );
    tokio::time::sleep(delay).await;
    tracing::info!("shutdown delay over; closing the webhook listener");
    close.cancel();
}

/// Listens for SIGTERM and ctrl-c (SIGINT) from the moment it is called, not from the first
/// poll: a signal that arrives while the server is still starting must not kill the process
/// with the default action. The returned future resolves on the first of them.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = interrupt.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files, reloaded when they change.
    Files {
        files: tls::CertFiles,
        reload_interval: Duration,
    },
    /// A throwaway CA and a `localhost` certificate; the CA is written to `ca_out`.
    Development { ca_out: PathBuf },
}

/// Everything `serve` needs.
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub tls: TlsSource,
    pub policy: Policy,
    pub cluster: Arc<dyn ClusterView>,
    pub limits: Limits,
    /// How long the webhook keeps accepting after shutdown starts (readiness already off).
    pub shutdown_delay: Duration,
    /// How long in-flight requests then have to finish.
    pub shutdown_grace: Duration,
}

/// Addresses the servers actually bound (port 0 resolved), for tests and logs.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
}

/// Binds both listeners and returns the running server; it stops when `shutdown` fires.
pub async fn start(
    opts: ServeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<(Bound, tokio::task::JoinHandle<()>)> {
    let health = admin::Health::default();
    let (store, reload) = match &opts.tls {
        TlsSource::Files {
            files,
            reload_interval,
        } => {
            let loaded = files.stamps();
            let key = files.load().context("loading the TLS certificate")?;
            (
                tls::CertStore::new(key),
                Some((files.clone(), loaded, *reload_interval)),
            )
        }
        TlsSource::Development { ca_out } => {
            let names = ["localhost", "127.0.0.1", "::1"].map(str::to_owned);
            let g = crate::certs::generate("earthly-webhook development CA", &names, 30)?;
            if let Some(dir) = ca_out.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(ca_out, &g.ca_pem)
                .with_context(|| format!("writing the development CA to {}", ca_out.display()))?;
            let key = tls::certified_key(
                g.cert_pem.as_bytes(),
                g.key_pem.as_bytes(),
                "generated certificate",
                "generated key",
            )?;
            tracing::warn!(
                ca = %ca_out.display(),
                "DEVELOPMENT ONLY: serving a throwaway certificate for localhost; pass --tls-cert and --tls-key in a cluster"
            );
            println!("development CA written to {}", ca_out.display());
            (tls::CertStore::new(key), None)
        }
    };
    let tls_config = Arc::new(tls::server_config(store.clone())?);

    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("binding the webhook listener on {}", opts.listen))?;
    let admin_listener = TcpListener::bind(opts.admin_listen)
        .await
        .with_context(|| format!("binding the admin listener on {}", opts.admin_listen))?;
    let bound = Bound {
        webhook: listener.local_addr()?,
        admin: admin_listener.local_addr()?,
    };

    let metrics = Arc::new(Metrics::new());
    metrics.set_certificate_expiry(store.not_after_unix());
    let state = AppState {
        policy: Arc::new(opts.policy),
        cluster: Arc::new(MeteredCluster::new(opts.cluster, metrics.clone())),
        metrics: metrics.clone(),
    };
    let app = router(state, &opts.limits);
    let watch = reload.map(|(files, loaded, interval)| {
        let (m, s) = (metrics.clone(), store.clone());
        tokio::spawn(tls::watch(
            files,
            loaded,
            store.clone(),
            interval,
            shutdown.clone(),
            move |ok| {
                m.record_certificate_reload(ok);
                m.set_certificate_expiry(s.not_after_unix());
            },
        ))
    });
    // Readiness turns off the moment shutdown starts; the admin port itself stays up until the
    // webhook has drained, so probes see "not ready" rather than "connection refused".
    let health = health.stopping_on(shutdown.clone());
    let admin_stop = CancellationToken::new();
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        health.clone(),
        metrics.clone(),
        admin_stop.clone(),
    ));
    let close = CancellationToken::new();
    tokio::spawn(close_after_delay(
        shutdown.clone(),
        opts.shutdown_delay,
        close.clone(),
    ));
    let webhook = tokio::spawn(serve_tls(
        listener,
        tls_config,
        app,
        opts.limits,
        metrics,
        close,
        opts.shutdown_grace,
    ));
    // Ready only now: config loaded, certificate loaded, listener bound.
    health.set_ready(true);
    tracing::info!(
        webhook = %bound.webhook,
        admin = %bound.admin,
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "serving"
    );
    let handle = tokio::spawn(async move {
        shutdown.cancelled().await;
        health.set_ready(false);
        if let Err(error) = webhook.await {
            tracing::error!(%error, "webhook server task failed");
        }
        admin_stop.cancel();
        for task in std::iter::once(admin).chain(watch) {
            if let Err(error) = task.await {
                tracing::error!(%error, "server task failed");
            }
        }
    });
    Ok((bound, handle))
}
