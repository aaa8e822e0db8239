//! The docs against the code: every rule id in `docs/policy.md`'s tables is one the code uses and
//! every one the code uses is there; every metric README names is exported and every exported
//! one is named.

use std::collections::BTreeSet;
use std::path::Path;

use std::sync::Arc;
use std::time::Duration;

use earthly_webhook::cluster::{ClusterView, LookupError, Recording};
use earthly_webhook::metrics::{ConnectionResult, MeteredCluster, Metrics, ReviewOutcome};
use earthly_webhook::review::Verdict;
use earthly_webhook::rule_id::RuleId;
use strum::IntoEnumIterator;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The first cell of every table row that is a single code span: `| \`name\` | ...`.
fn table_names(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |"))
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[test]
fn policy_doc_lists_every_rule_id_and_no_other() {
    let documented = table_names(&read("docs/policy.md"));
    let ids: BTreeSet<String> = RuleId::iter().map(|r| r.as_str().to_owned()).collect();
    let missing: Vec<&String> = ids.difference(&documented).collect();
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|d| d.parse::<RuleId>().is_err() && looks_like_a_rule(d))
        .collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "rule ids missing from docs/policy.md: {missing:?}; documented but not in the code: {unknown:?}"
    );
}

/// Rule ids are lowercase words joined by `-` or `_`; other tables hold modes, labels and such.
fn looks_like_a_rule(name: &str) -> bool {
    (name.contains('-') || name.contains('_'))
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-' || c == '_')
}

/// The metric names as scraped after every kind of event was recorded once (a family without
/// samples is not written): counters with `_total`, info with `_info`, the rest as declared.
fn exported_metrics() -> BTreeSet<String> {
    let metrics = Arc::new(Metrics::new());
    let outcome = ReviewOutcome {
        kind: "Pod",
        operation: "CREATE",
        verdict: Some(Verdict::Mutated),
        patch_operations: vec![(RuleId::Privileged, 1)],
        violations: vec![RuleId::BuildkitdReplicas.as_str()],
    };
    metrics.record_request("mutate", 200, Some(&outcome), Duration::from_micros(40));
    metrics.set_certificate_expiry(Some(2_000_000_000));
    metrics.record_certificate_reload(true);
    metrics.record_connection(ConnectionResult::Served);
    let _open = metrics.open_connection();
    let failing = MeteredCluster::new(
        Arc::new(Recording::failing(LookupError::Unavailable)),
        metrics.clone(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let failed = runtime.block_on(failing.namespace_labels("ci"));
    assert!(failed.is_err());
    metrics
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE earthly_webhook_"))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| match kind {
            "counter" => format!("{name}_total"),
            "info" => format!("{name}_info"),
            _ => name.to_owned(),
        })
        .collect()
}

/// The names in README's **Metrics** paragraph, without their labels.
fn readme_metrics() -> BTreeSet<String> {
    let readme = read("README.md");
    let start = readme.find("- **Metrics**").expect("a Metrics paragraph");
    let end = readme[start..]
        .find("\n- **")
        .map_or(readme.len(), |e| start + e);
    readme[start..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|span| span.split('{').next().unwrap_or(span).to_owned())
        .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .filter(|name| name.contains('_') && !name.ends_with('_'))
        .collect()
}

#[test]
fn readme_names_exactly_the_exported_metrics() {
    let exported = exported_metrics();
    assert!(exported.contains("requests_total"), "{exported:?}");
    let named = readme_metrics();
    let missing: Vec<&String> = exported.difference(&named).collect();
    let unknown: Vec<&String> = named.difference(&exported).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "exported but not in README: {missing:?}; in README but not exported: {unknown:?}"
    );
}

/// README's layout names every file and folder directly under `src/`, and nothing that is gone.
#[test]
fn readme_layout_matches_the_tree() {
    let readme = read("README.md");
    let start = readme.find("## Layout").expect("a Layout section");
    let layout = &readme[start..];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let named: BTreeSet<String> = layout
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .filter(|w| w.starts_with("src/"))
        .map(|w| w.trim_end_matches(['.', ':']).to_owned())
        .collect();
    for path in &named {
        assert!(
            root.join(path).exists(),
            "README names {path}, which is gone"
        );
    }
    for entry in std::fs::read_dir(root.join("src")).expect("src") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let path = format!("src/{name}");
        let dir = format!("{path}/");
        assert!(
            named.contains(&path) || named.contains(&dir),
            "README's layout does not name {path}"
        );
    }
}
