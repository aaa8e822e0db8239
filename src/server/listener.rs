//! The HTTPS listener: TLS handshakes, connection slots and timeouts, and the graceful stop.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::Limits;
use crate::metrics::{ConnectionResult, Metrics};

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
pub(super) async fn close_after_delay(
    shutdown: CancellationToken,
    delay: Duration,
    close: CancellationToken,
) {
    shutdown.cancelled().await;
    tracing::info!(
        ?delay,
        "shutting down: not ready; still serving until endpoints drop this pod"
    );
    tokio::time::sleep(delay).await;
    tracing::info!("shutdown delay over; closing the webhook listener");
    close.cancel();
}
