//! `earthly-webhook check`: the webhook's policy run offline over manifests, for pipelines and
//! reviews. Every object goes through [`crate::review::review`], the function the HTTPS server
//! calls, as the AdmissionRequest the apiserver would send; nothing here decides policy.
//!
//! What is sent, per object (all CREATE, in the object's namespace, else `--namespace`):
//! - a Pod: `/mutate`, then `/validate` with the mutated pod (the apiserver runs validating
//!   webhooks after mutating ones);
//! - a Deployment, StatefulSet, ReplicaSet, DaemonSet, ReplicationController, Job or CronJob:
//!   `/validate` with the object, then `/mutate` with the Pod its controller would create from
//!   the pod template; that patch is rebased onto the template, so the mutated manifest makes
//!   the pods the webhook would have made;
//! - anything else: `/validate`.
//!
//! Lookups the rules make are answered from the other objects of the same input (a partial
//! [`MemoryCluster`], pods appearing in input order); what is not in the input is reported as
//! unknown, never guessed.

pub mod findings;
pub mod helm;
pub mod input;
pub mod junit;
pub mod kinds;
pub mod load;
pub mod lookups;
mod object;
pub mod output;
pub mod request;
pub mod sarif;
pub mod scalar;
pub mod template;
pub mod yaml;

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use json_patch::Patch;
use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, FailureMode, Mode};
use crate::review::Policy;
use crate::rules::Violation;
use input::{Document, Object, Origin, Source};
use load::Lines;
pub use request::{Submission, Subresource, review_object};

pub use lookups::InputCluster;
use output::{OutputFormat, Style};
use request::is_namespaced;

/// Exit status when every object is admitted (possibly mutated, possibly with warnings).
pub const EXIT_ALLOWED: u8 = 0;
/// Exit status when at least one object, or the pods of one, would be denied.
pub const EXIT_DENIED: u8 = 1;
/// Exit status for a usage error, an unreadable policy file or unreadable input.
pub const EXIT_INPUT_ERROR: u8 = 2;

/// The namespace objects that name none are checked in, like `kubectl`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Flags of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Manifests to check: a file, a directory (its *.yaml, *.yml and *.json files, in name
    /// order) or `-` for standard input. Multi-document YAML, JSON and `kind: List` are read.
    /// Repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        required_unless_present = "files"
    )]
    pub filenames: Vec<PathBuf>,
    /// More manifests, as with -f: for tools that append file names, like pre-commit.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Policy file (YAML), the same as `serve --config`. Without it the defaults apply.
    #[arg(long, env = "EARTHLY_WEBHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Namespace for objects that do not name one.
    #[arg(short = 'n', long, env = "EARTHLY_WEBHOOK_CHECK_NAMESPACE", default_value = DEFAULT_NAMESPACE, value_parser = namespace_name)]
    pub namespace: String,
    /// Policy mode to check in [default: the policy file's policy.defaultMode, enforce].
    #[arg(long, value_enum, env = "EARTHLY_WEBHOOK_CHECK_MODE")]
    pub mode: Option<Mode>,
    /// What to print on standard output. With yaml and patch the text report goes to standard
    /// error, so the output can be piped into kubectl.
    #[arg(short = 'o', long, value_enum, env = "EARTHLY_WEBHOOK_CHECK_OUTPUT", default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// A namespace name is an RFC 1123 label: what the apiserver would accept.
fn namespace_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err("a namespace is at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit".to_owned())
    }
}

/// How objects are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Namespace for objects that name none.
    pub namespace: String,
    /// Mode for every review; `None` uses the policy's default mode.
    pub mode: Option<Mode>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            mode: None,
        }
    }
}

/// The verdict on one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Admitted unchanged.
    Allowed,
    /// Admitted with a patch (to the object, or to the pods its template makes).
    Mutated,
    /// Refused: the object, or the pods its template makes.
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What `check` found about one object. Serialised as it is in the `-o json` report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReport {
    #[serde(flatten)]
    pub origin: Origin,
    pub api_version: String,
    pub kind: String,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// `metadata.name`, or `metadata.generateName` followed by `*`.
    pub name: String,
    pub verdict: Outcome,
    /// Every warning the reviews returned, in order.
    pub warnings: Vec<String>,
    /// The rule of each warning, in the same order.
    #[serde(skip)]
    pub warned: Vec<crate::rule_id::RuleId>,
    /// The messages of the reviews that denied.
    pub denials: Vec<String>,
    /// What `audit` mode recorded.
    pub audit_annotations: BTreeMap<String, String>,
    /// RFC 6902 patch against the object as written (for a `List` item, against the item).
    pub patch: Patch,
    /// Patch operations per mutation rule.
    pub patch_operations: BTreeMap<String, usize>,
    /// The object with the patch applied.
    #[serde(skip)]
    pub mutated: Value,
    /// The policy violations behind the denials, warnings or audit annotations, with their
    /// rule ids.
    #[serde(skip)]
    pub violations: Vec<Violation>,
    /// Where the object's fields are in its file.
    #[serde(skip)]
    pub lines: Lines,
}

impl ObjectReport {
    /// `Kind namespace/name`, as review messages name objects.
    pub fn object_ref(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// The result of a run: a report per object, and the documents they came from (for `-o yaml`).
#[derive(Debug, Clone)]
pub struct Report {
    /// The mode the reviews ran in.
    pub mode: Mode,
    pub objects: Vec<ObjectReport>,
    pub documents: Vec<Document>,
}

/// Counts for the summary line and the JSON report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub objects: usize,
    pub allowed: usize,
    pub mutated: usize,
    pub denied: usize,
    pub warnings: usize,
}

impl Report {
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            objects: self.objects.len(),
            ..Totals::default()
        };
        for o in &self.objects {
            match o.verdict {
                Outcome::Allowed => t.allowed += 1,
                Outcome::Mutated => t.mutated += 1,
                Outcome::Denied => t.denied += 1,
            }
            t.warnings += o.warnings.len();
        }
        t
    }

    /// 1 when anything would be denied, else 0.
    pub fn exit_status(&self) -> u8 {
        if self.objects.iter().any(|o| o.verdict == Outcome::Denied) {
            EXIT_DENIED
        } else {
            EXIT_ALLOWED
        }
    }
}

/// The namespace an object is created in: its own, else the default; `None` when cluster-scoped.
fn namespace_of(obj: &Object, default: &str) -> Option<String> {
    if !is_namespaced(&obj.kind) {
        return None;
    }
    Some(
        obj.metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| default.to_owned()),
    )
}

/// Checks every object of the documents, in order.
pub async fn check_documents(
    policy: &Policy,
    documents: Vec<Document>,
    options: &CheckOptions,
) -> Report {
    let objects: Vec<(Object, Option<String>)> = documents
        .iter()
        .flat_map(|d| d.objects.iter())
        .map(|o| (o.clone(), namespace_of(o, &options.namespace)))
        .collect();
    let cluster = InputCluster::new(&objects);
    Report {
        mode: options.mode.unwrap_or(policy.config().policy.default_mode),
        objects: check_objects(policy, &objects, options.mode, cluster).await,
        documents,
    }
}

/// Checks `objects` (each with the namespace it is created in) in order, the lookups answered
/// by `cluster`; `audit` calls this with the objects it read from a namespace.
pub async fn check_objects(
    policy: &Policy,
    objects: &[(Object, Option<String>)],
    mode: Option<Mode>,
    mut cluster: InputCluster,
) -> Vec<ObjectReport> {
    let mut reports = Vec::with_capacity(objects.len());
    for (index, (obj, namespace)) in objects.iter().enumerate() {
        let view = cluster.before(index);
        reports.push(object::check_object(policy, view, mode, obj, namespace.as_deref()).await);
    }
    reports
}

/// The policy `check` runs: the policy file (or the defaults) with `cluster.failureMode:
/// allow`. Offline, a lookup fails only because the input lacks the object; that is a gap to
/// report (a warning saying what the cluster would have to be asked), not a reason to deny.
pub fn check_policy(path: Option<&std::path::Path>) -> anyhow::Result<Policy> {
    let mut config = match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    config.cluster.failure_mode = FailureMode::Allow;
    Ok(Policy::new(config)?)
}

/// Writes to a stream; a reader that went away (`| head`) is not an error.
pub(crate) fn emit(stream: &mut dyn Write, text: &str) -> Result<(), std::io::Error> {
    match stream
        .write_all(text.as_bytes())
        .and_then(|()| stream.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Runs `check` and returns its exit status.
pub async fn run(args: CheckArgs) -> ExitCode {
    let policy = match check_policy(args.config.as_deref()) {
        Ok(p) => p,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(EXIT_INPUT_ERROR);
        }
    };
    let sources: Vec<Source> = args
        .filenames
        .iter()
        .chain(&args.files)
        .map(|p| Source::from_arg(p))
        .collect();
    let documents = match input::read_sources(&sources, &mut std::io::stdin().lock()) {
        Ok(d) => d,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            return ExitCode::from(EXIT_INPUT_ERROR);
        }
    };
    let options = CheckOptions {
        namespace: args.namespace,
        mode: args.mode,
    };
    let report = check_documents(&policy, documents, &options).await;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let written = match args.output {
        OutputFormat::Text => emit(
            &mut stdout.lock(),
            &output::text(&report, Style::detect(stdout.is_terminal())),
        ),
        OutputFormat::Json => emit(&mut stdout.lock(), &output::json(&report)),
        OutputFormat::Sarif => emit(&mut stdout.lock(), &sarif::sarif(&report)),
        OutputFormat::Junit => emit(&mut stdout.lock(), &junit::junit(&report)),
        OutputFormat::Yaml | OutputFormat::Patch => {
            let data = if args.output == OutputFormat::Yaml {
                output::yaml(&report)
            } else {
                output::patch(&report)
            };
            emit(&mut stdout.lock(), &data).and_then(|()| {
                emit(
                    &mut stderr.lock(),
                    &output::text(&report, Style::detect(stderr.is_terminal())),
                )
            })
        }
    };
    if let Err(error) = written {
        eprintln!("error: cannot write the report: {error}");
        return ExitCode::from(EXIT_INPUT_ERROR);
    }
    ExitCode::from(report.exit_status())
}

#[cfg(test)]
mod tests;
