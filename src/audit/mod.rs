//! `earthly-webhook audit`: the webhook's policy over what already runs. The objects the webhook
//! would judge are read from the cluster one namespace at a time (paged LISTs) and judged by
//! `check`'s pipeline, as if each were created now: the same `review` function the server runs,
//! with lookups answered from what was read in that namespace. One policy, three front ends.

pub mod findings;
pub mod judge;
pub mod list;
pub mod output;
pub mod policyreport;
pub mod scope;
pub mod write;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Args;
use serde_json::Value;

use crate::check::{EXIT_ALLOWED, EXIT_DENIED, EXIT_INPUT_ERROR, Outcome};
use crate::config::Mode;
use crate::review::Policy;
use list::{ListError, Lister, NAMESPACES};
use output::{NamespaceAudit, OutputFormat};
use scope::{Labels, Requested, ScopeError, Selector};
use write::{WriteError, Writer};

/// Flags of `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// kubeconfig [default: KUBECONFIG or ~/.kube/config, else the in-cluster service account].
    #[arg(long, env = "EARTHLY_WEBHOOK_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Policy file (YAML), the same as `serve --config`. Without it the defaults apply.
    #[arg(long, env = "EARTHLY_WEBHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Audit this namespace, whatever its labels (repeatable) [default: the namespaces the
    /// webhook judges: --opt-in-label, minus kube-system and --exclude-namespace].
    #[arg(
        short = 'n',
        long = "namespace",
        value_name = "NS",
        conflicts_with = "all_namespaces"
    )]
    pub namespaces: Vec<String>,
    /// Audit every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// The label that opts a namespace in (the chart's webhooks.optInLabel).
    #[arg(
        long,
        env = "EARTHLY_WEBHOOK_AUDIT_OPT_IN_LABEL",
        default_value = "earthly.dev/webhook=enabled",
        value_name = "KEY=VALUE"
    )]
    pub opt_in_label: String,
    /// The label naming a namespace's policy mode (the chart's webhooks.policyModeLabel).
    #[arg(
        long,
        env = "EARTHLY_WEBHOOK_AUDIT_MODE_LABEL",
        default_value = "earthly.dev/policy"
    )]
    pub mode_label: String,
    /// A namespace the webhook never judges, besides kube-system: its own, and the chart's
    /// webhooks.excludeNamespaces (repeatable).
    #[arg(long = "exclude-namespace", value_name = "NS")]
    pub exclude_namespaces: Vec<String>,
    /// What to print on standard output.
    #[arg(short = 'o', long, value_enum, env = "EARTHLY_WEBHOOK_AUDIT_OUTPUT", default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Create or update one PolicyReport per audited namespace (server-side apply), and delete
    /// the reports of namespaces that left the scope.
    #[arg(long)]
    pub write_reports: bool,
    /// Exit 0 even when the webhook would refuse something (for a scheduled scan whose findings
    /// go to the reports); errors still exit 2.
    #[arg(long)]
    pub exit_zero: bool,
    /// Objects per LIST page.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
}

/// Why an audit could not finish. Every message names what was refused or missing.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error(transparent)]
    List(#[from] ListError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{0}")]
    Connect(String),
}

/// How a scan runs.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub requested: Requested,
    pub selector: Selector,
    pub page_size: u32,
    pub write_reports: bool,
    /// Print `namespaces done / total` on standard error.
    pub progress: bool,
}

fn labels_of(ns: &Value) -> Option<(String, Labels)> {
    let name = ns.pointer("/metadata/name")?.as_str()?.to_owned();
    let labels = ns
        .pointer("/metadata/labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    Some((name, labels))
}

/// Reads and judges the namespaces in scope, one at a time; with `write_reports`, writes each
/// namespace's PolicyReport as soon as it is judged and deletes the stale ones at the end.
pub async fn scan(
    client: kube::Client,
    policy: &Policy,
    options: &ScanOptions,
) -> Result<Vec<NamespaceAudit>, AuditError> {
    let lister = Lister::new(client, options.page_size);
    let writer = Writer::new(&lister);
    let existing = if options.write_reports {
        writer.existing().await?
    } else {
        Vec::new()
    };
    let selector = match options.requested {
        Requested::Selected => Some(options.selector.label_selector()),
        _ => None,
    };
    let namespaces: Vec<(String, Labels)> = lister
        .list(&NAMESPACES, None, selector.as_deref())
        .await?
        .iter()
        .filter_map(labels_of)
        .collect();
    let targets = scope::select(
        &namespaces,
        &options.requested,
        &options.selector,
        policy.config().policy.default_mode,
    )?;
    let mut scan = Vec::with_capacity(targets.len());
    for (done, target) in targets.iter().enumerate() {
        let items = lister.read_namespace(&target.name).await?;
        let objects = judge::judge_namespace(policy, target, items).await;
        if options.write_reports {
            let report = policyreport::report(target, &objects, SystemTime::now());
            writer.apply(&target.name, &report).await?;
        }
        if options.progress {
            eprint!("\raudited {}/{} namespaces", done + 1, targets.len());
        }
        scan.push(NamespaceAudit {
            name: target.name.clone(),
            mode: target.mode,
            target: target.clone(),
            objects,
        });
    }
    if options.progress && !targets.is_empty() {
        eprintln!();
    }
    if options.write_reports {
        let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
        for ns in write::stale(&existing, &names) {
            writer.delete(&ns).await?;
            tracing::info!(namespace = %ns, "deleted the report of a namespace out of scope");
        }
    }
    Ok(scan)
}

/// 1 when the webhook would refuse an object in an enforce-mode namespace, else 0.
pub fn exit_status(scan: &[NamespaceAudit]) -> u8 {
    let denied = scan
        .iter()
        .filter(|ns| ns.mode == Mode::Enforce)
        .flat_map(|ns| &ns.objects)
        .any(|o| o.verdict == Outcome::Denied);
    if denied { EXIT_DENIED } else { EXIT_ALLOWED }
}

async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, AuditError> {
    let config = crate::cluster::client_config(kubeconfig)
        .await
        .map_err(|e| AuditError::Connect(e.to_string()))?
        .map_err(|e| {
            AuditError::Connect(format!(
                "no Kubernetes API to audit: {e} (give --kubeconfig, set KUBECONFIG or run in a pod)"
            ))
        })?;
    kube::Client::try_from(config)
        .map_err(|e| AuditError::Connect(format!("cannot build a Kubernetes client: {e}")))
}

fn options(args: &AuditArgs) -> Result<ScanOptions, AuditError> {
    let requested = if args.all_namespaces {
        Requested::All
    } else if args.namespaces.is_empty() {
        Requested::Selected
    } else {
        Requested::Named(args.namespaces.clone())
    };
    Ok(ScanOptions {
        requested,
        selector: Selector {
            opt_in: scope::parse_label(&args.opt_in_label)?,
            mode_label: args.mode_label.clone(),
            excluded: args.exclude_namespaces.clone(),
        },
        page_size: args.page_size,
        write_reports: args.write_reports,
        progress: std::io::stderr().is_terminal(),
    })
}

/// Runs `audit` and returns its exit status.
pub async fn run(args: AuditArgs) -> ExitCode {
    let fail = |error: &dyn std::fmt::Display| {
        eprintln!("error: {error}");
        ExitCode::from(EXIT_INPUT_ERROR)
    };
    let policy = match crate::check::check_policy(args.config.as_deref()) {
        Ok(p) => p,
        Err(error) => return fail(&format!("{error:#}")),
    };
    let scan = match options(&args) {
        Ok(options) => match client(args.kubeconfig.as_deref()).await {
            Ok(client) => scan(client, &policy, &options).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let scan = match scan {
        Ok(s) => s,
        Err(error) => return fail(&error),
    };
    let text = match args.output {
        OutputFormat::Text => output::text(&scan),
        OutputFormat::Json => output::json(&scan),
        OutputFormat::Yaml => output::yaml(&scan),
        OutputFormat::Policyreport => output::policy_reports_yaml(&scan, SystemTime::now()),
    };
    if let Err(error) = crate::check::emit(&mut std::io::stdout().lock(), &text) {
        return fail(&format!("cannot write the report: {error}"));
    }
    if args.exit_zero {
        return ExitCode::from(EXIT_ALLOWED);
    }
    ExitCode::from(exit_status(&scan))
}
