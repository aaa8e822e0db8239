//! The external tools the chart tests run (helm, promtool): where to find them, and what to do
//! when one is missing (skip with a message, except under `CI`, where that is a failure).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The first of `$env_var` and `candidates` that runs with `version_args`.
pub fn find(env_var: &str, candidates: &[PathBuf], version_args: &[&str]) -> Option<PathBuf> {
    std::env::var_os(env_var)
        .map(PathBuf::from)
        .into_iter()
        .chain(candidates.iter().cloned())
        .find(|tool| {
            Command::new(tool)
                .args(version_args)
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// helm: `$HELM`, else `.tools/bin/helm` as installed by `scripts/install-tools.sh`.
pub fn find_helm() -> Option<PathBuf> {
    find("HELM", &[repo().join(".tools/bin/helm")], &["version"])
}

/// promtool: `$PROMTOOL`, else from `PATH` (Debian's `prometheus` package, which
/// `scripts/install-tools.sh` installs).
pub fn find_promtool() -> Option<PathBuf> {
    find(
        "PROMTOOL",
        &[
            PathBuf::from("promtool"),
            PathBuf::from("/usr/bin/promtool"),
        ],
        &["--version"],
    )
}

/// `tool`, or `None` with a message when it is missing outside CI; a panic under `CI`.
pub fn required(tool: Option<PathBuf>, name: &str, hint: &str) -> Option<PathBuf> {
    if tool.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} not found ({hint}): CI must run this test"
        );
        eprintln!("skipped: {name} not found ({hint})");
    }
    tool
}
