//! The HTTPS webhook server and the plain-HTTP admin server around the review module.

pub mod admin;
mod listener;
mod record;
mod routes;
pub mod tls;

use listener::close_after_delay;
pub use listener::serve_tls;
pub use routes::{AppState, Limits, WEBHOOK_PATHS, router};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster::ClusterView;
use crate::metrics::{MeteredCluster, Metrics};
use crate::review::Policy;

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
