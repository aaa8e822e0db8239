//! `earthly-webhook policies`: the rules that need no cluster lookup, as admission policies the
//! apiserver evaluates in-process (ValidatingAdmissionPolicy, `admissionregistration.k8s.io/v1`,
//! Kubernetes 1.30+; MutatingAdmissionPolicy, `v1beta1`, 1.34+), generated from the same config the server reads.
//! `tests/policies.rs` evaluates them with a CEL interpreter over every fixture and checks they
//! decide as the webhook does; docs/admission-policies.md says what they cover.

pub mod bindings;
pub mod cel;
mod footguns;
mod glob;
pub mod mutating;
pub mod output;
mod placement;
mod scratch;
pub mod validating;

use serde_json::Value;

pub use bindings::Selection;

use crate::config::Config;

/// Every object, policies first, then their bindings.
pub fn generate(config: &Config, selection: &Selection) -> Vec<Value> {
    let (decisions, warnings) = validating::policies(config);
    let mut out: Vec<Value> = decisions
        .iter()
        .chain(&warnings)
        .map(validating::Policy::to_object)
        .collect();
    out.push(mutating::policy(config));
    for p in &decisions {
        out.extend(bindings::validating(
            p.name,
            selection,
            config.policy.default_mode,
        ));
    }
    for p in &warnings {
        out.push(bindings::warnings(p.name, selection));
    }
    out.push(bindings::mutating(mutating::NAME, selection));
    out
}

/// Flags of `policies`.
#[derive(Debug, clap::Args)]
pub struct PoliciesArgs {
    /// Policy file, the same the server reads (defaults when absent).
    #[arg(long, env = "EARTHLY_WEBHOOK_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
    /// Namespace label that opts a namespace in, `key=value` (the chart's `webhooks.optInLabel`).
    #[arg(long, default_value = "earthly.dev/webhook=enabled", value_parser = label)]
    pub opt_in_label: (String, String),
    /// Namespace label naming the policy mode (the chart's `webhooks.policyModeLabel`).
    #[arg(long, default_value = "earthly.dev/policy")]
    pub policy_mode_label: String,
    /// Object label that opts one object out, `key=value` (the chart's `webhooks.optOutLabel`).
    #[arg(long, default_value = "earthly.dev/webhook=disabled", value_parser = label)]
    pub opt_out_label: (String, String),
    /// Namespaces never judged besides `kube-system` (repeat the flag for several).
    #[arg(long = "exclude-namespace")]
    pub exclude_namespaces: Vec<String>,
}

/// Output formats of `policies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
}

fn label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not a label: write key=value"))
}

impl PoliciesArgs {
    /// The namespace selection these flags describe.
    pub fn selection(&self) -> Selection {
        let mut exclude_namespaces = vec!["kube-system".to_owned()];
        exclude_namespaces.extend(self.exclude_namespaces.iter().cloned());
        Selection {
            opt_in: self.opt_in_label.clone(),
            mode_label: self.policy_mode_label.clone(),
            opt_out: self.opt_out_label.clone(),
            exclude_namespaces,
        }
    }
}

/// Runs `policies`: prints the objects for the config.
pub fn run(args: &PoliciesArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let objects = generate(&config, &args.selection());
    let text = match args.output {
        Format::Yaml => output::yaml(&objects)?,
    };
    crate::check::emit(&mut std::io::stdout().lock(), &text)?;
    Ok(())
}
