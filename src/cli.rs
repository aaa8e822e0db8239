//! The command line: one `clap` derive, `///` docs are the `--help` text, every flag has an
//! `EARTHLY_WEBHOOK_...` environment fallback.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::check::output::Style;
use crate::cluster::{self, ClusterView};
use crate::config::Config;
use crate::review::Policy;
use crate::server::{self, Limits, ServeOptions, TlsSource, tls::CertFiles};

/// Kubernetes admission webhook that makes Earthly CI run correctly and safely.
#[derive(Debug, Parser)]
#[command(name = "earthly-webhook", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(long, global = true, env = "EARTHLY_WEBHOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level or filter directives (`info`, `earthly_webhook=debug,warn`) [default: `info`
    /// for serve; `error` for check, audit and certs, whose results go to stdout].
    #[arg(long, global = true, env = "EARTHLY_WEBHOOK_LOG_LEVEL")]
    pub log_level: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log pipelines.
    Json,
    /// Human-readable lines.
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS admission webhook server.
    Serve(ServeArgs),
    /// Check manifests offline: what the webhook would mutate, warn about and deny.
    Check(crate::check::CheckArgs),
    /// Judge what already runs in the cluster by the same policy: findings, PolicyReports.
    Audit(crate::audit::AuditArgs),
    /// Generate a CA and a serving certificate for the webhook Service, and print the caBundle.
    Certs(CertsArgs),
    /// Print the rules that need no cluster lookup as ValidatingAdmissionPolicies and bindings.
    Policies(crate::policies::PoliciesArgs),
}

/// Flags of `certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(
        long,
        env = "EARTHLY_WEBHOOK_SERVICE",
        default_value = "earthly-webhook"
    )]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(
        long,
        env = "EARTHLY_WEBHOOK_NAMESPACE",
        default_value = "earthly-webhook"
    )]
    pub namespace: String,
    /// Directory to write ca.crt, tls.crt and tls.key into (created if missing).
    #[arg(long, env = "EARTHLY_WEBHOOK_OUT_DIR")]
    pub out_dir: PathBuf,
    /// Validity of both certificates, in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Extra DNS names or IP addresses for the serving certificate (repeatable).
    #[arg(long = "extra-name", value_name = "NAME")]
    pub extra_names: Vec<String>,
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 5s, 1m)"))
}

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS webhook listener.
    #[arg(long, env = "EARTHLY_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate (chain) to serve; reloaded when the file changes. Without --tls-cert and
    /// --tls-key a throwaway development certificate for localhost is generated.
    #[arg(long, env = "EARTHLY_WEBHOOK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; reloaded when the file changes.
    #[arg(long, env = "EARTHLY_WEBHOOK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Policy file (YAML). Without it the defaults apply.
    #[arg(long, env = "EARTHLY_WEBHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the plain-HTTP admin listener (/healthz, /readyz, /metrics).
    #[arg(
        long,
        env = "EARTHLY_WEBHOOK_ADMIN_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub admin_listen: SocketAddr,
    /// Where the development CA is written when no certificate is given
    /// [default: `<temp dir>/earthly-webhook/dev-ca.pem`].
    #[arg(long, env = "EARTHLY_WEBHOOK_DEV_CA_OUT")]
    pub dev_ca_out: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "EARTHLY_WEBHOOK_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = duration)]
    pub tls_reload_interval: Duration,
    /// Largest request body accepted, in bytes; larger ones get HTTP 413 unread.
    #[arg(long, env = "EARTHLY_WEBHOOK_MAX_BODY_BYTES", default_value_t = Limits::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Time a client has for the TLS handshake and for sending request headers.
    #[arg(long, env = "EARTHLY_WEBHOOK_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub header_read_timeout: Duration,
    /// Time one request may take; keep it below the webhooks' timeoutSeconds.
    #[arg(long, env = "EARTHLY_WEBHOOK_REQUEST_TIMEOUT", default_value = "4s", value_parser = duration)]
    pub request_timeout: Duration,
    /// Connections served at once.
    #[arg(long, env = "EARTHLY_WEBHOOK_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,
    /// After SIGTERM, how long the webhook keeps accepting and serving new connections while
    /// /readyz already fails, so endpoints drop the pod before its listener closes.
    #[arg(long, env = "EARTHLY_WEBHOOK_SHUTDOWN_DELAY", default_value = "5s", value_parser = duration)]
    pub shutdown_delay: Duration,
    /// After the shutdown delay, how long in-flight requests may take to finish.
    #[arg(long, env = "EARTHLY_WEBHOOK_SHUTDOWN_GRACE", default_value = "20s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// kubeconfig for the cluster lookups [default: KUBECONFIG or ~/.kube/config, else the
    /// in-cluster service account; with none of them, lookups fail and follow
    /// cluster.failureMode].
    #[arg(long, env = "EARTHLY_WEBHOOK_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    // The idle thread is woken because hyper wakes the connection task while it runs (taking
    // the request body wakes the body channel's sender, already closed) and tokio's
    // multi-thread scheduler answers a self-wake by waking an idle worker: 2.6 context switches
    // per request at one connection instead of 1.0.
    /// Runtime worker threads. One thread answers thousands of reviews a second; with a second
    /// one, every request on a quiet server also wakes the idle thread, which finds nothing to
    /// do (docs/benchmarks.md). Scale with replicas; raise this only together with the CPU limit.
    #[arg(long, env = "EARTHLY_WEBHOOK_WORKER_THREADS", default_value = "1")]
    pub worker_threads: NonZeroUsize,
}

impl ServeArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            header_read_timeout: self.header_read_timeout,
            request_timeout: self.request_timeout,
            max_connections: self.max_connections,
        }
    }
}

/// Loads the policy file, or the defaults when none is given.
pub fn load_policy(path: Option<&std::path::Path>) -> anyhow::Result<Policy> {
    let config = match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    Ok(Policy::new(config)?)
}

/// Sets up logging to stderr, batched off the request path (see [`crate::logbuf`]); the guard
/// flushes what is left when dropped. Text logs are coloured only on a terminal and never with
/// `NO_COLOR` set, as `check` does.
fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<crate::logbuf::LogGuard> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("--log-level {level:?} is not a valid filter"))?;
    let colour = Style::detect(std::io::stderr().is_terminal()).color;
    let (writer, guard) =
        crate::logbuf::batched(std::io::stderr()).context("starting the log writer thread")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(writer);
    match format {
        // The webhook opens no spans, so the JSON lines skip looking for them.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))?;
    Ok(guard)
}

/// The async runtime: `workers` threads, or one per available CPU (cgroup limits included) when
/// `None`.
fn runtime(workers: Option<NonZeroUsize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n.get());
    }
    builder.enable_all().build()
}

/// Writes the certificates and prints the base64 caBundle on stdout.
fn certs(args: &CertsArgs) -> anyhow::Result<()> {
    use base64::Engine as _;
    let mut names = crate::certs::service_names(&args.service, &args.namespace);
    names.extend(args.extra_names.iter().cloned());
    let g = crate::certs::generate(
        &format!("earthly-webhook CA ({}/{})", args.namespace, args.service),
        &names,
        args.days,
    )?;
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let write = |name: &str, text: &str, private: bool| -> anyhow::Result<()> {
        let path = args.out_dir.join(name);
        crate::certs::write_file(&path, text.as_bytes(), private)
            .with_context(|| format!("writing {}", path.display()))
    };
    write("ca.crt", &g.ca_pem, false)?;
    write("tls.crt", &g.cert_pem, false)?;
    write("tls.key", &g.key_pem, true)?;
    eprintln!(
        "wrote ca.crt, tls.crt and tls.key to {} for {}; caBundle:",
        args.out_dir.display(),
        names.join(", ")
    );
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(g.ca_pem.as_bytes())
    );
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let policy = load_policy(args.config.as_deref())?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => TlsSource::Files {
            files: CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            },
            reload_interval: args.tls_reload_interval,
        },
        _ => TlsSource::Development {
            ca_out: args.dev_ca_out.clone().unwrap_or_else(|| {
                std::env::temp_dir()
                    .join("earthly-webhook")
                    .join("dev-ca.pem")
            }),
        },
    };
    let cluster: Arc<dyn ClusterView> =
        cluster::from_environment(args.kubeconfig.as_deref(), &policy.config().cluster).await?;
    let shutdown = CancellationToken::new();
    let opts = ServeOptions {
        listen: args.listen,
        admin_listen: args.admin_listen,
        tls,
        policy,
        cluster,
        limits: args.limits(),
        shutdown_delay: args.shutdown_delay,
        shutdown_grace: args.shutdown_grace,
    };
    let signal = server::shutdown_signal().context("listening for SIGTERM and ctrl-c")?;
    let (_bound, handle) = server::start(opts, shutdown.clone()).await?;
    signal.await;
    tracing::info!("shutting down");
    shutdown.cancel();
    handle.await.context("server task failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // kube's client and our server both use rustls; pick the provider once for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let level = cli.log_level.as_deref().unwrap_or(match cli.command {
        Command::Serve(_) => "info",
        Command::Check(_) | Command::Audit(_) | Command::Certs(_) | Command::Policies(_) => "error",
    });
    let _log_guard = match init_logging(cli.log_format, level) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let workers = match &cli.command {
        Command::Serve(args) => Some(args.worker_threads),
        Command::Check(_) | Command::Audit(_) | Command::Certs(_) | Command::Policies(_) => None,
    };
    let runtime = match runtime(workers) {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Certs(args) => certs(&args),
        Command::Policies(args) => crate::policies::run(&args),
        Command::Check(args) => return runtime.block_on(crate::check::run(args)),
        Command::Audit(args) => return runtime.block_on(crate::audit::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "exiting");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_has_the_worker_threads_asked_for() {
        for n in [1, 3] {
            let rt = runtime(NonZeroUsize::new(n)).expect("runtime");
            assert_eq!(rt.metrics().num_workers(), n);
        }
    }

    #[test]
    fn serve_defaults_to_one_worker_thread_and_refuses_zero() {
        let cli = Cli::try_parse_from(["earthly-webhook", "serve"]).expect("parse");
        let Command::Serve(args) = cli.command else {
            panic!("not serve: {:?}", cli.command)
        };
        assert_eq!(args.worker_threads.get(), 1);
        let error = Cli::try_parse_from(["earthly-webhook", "serve", "--worker-threads", "0"])
            .expect_err("0 threads");
        assert!(error.to_string().contains("--worker-threads"), "{error}");
    }
}
