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

/// kubernetes-validate: `$KUBERNETES_VALIDATE`, else `.tools/bin/kubernetes-validate` as
/// installed by `scripts/install-tools.sh`, else from `PATH`.
pub fn find_kubernetes_validate() -> Option<PathBuf> {
    find(
        "KUBERNETES_VALIDATE",
        &[
            repo().join(".tools/bin/kubernetes-validate"),
            PathBuf::from("kubernetes-validate"),
        ],
        &["--version"],
    )
}

/// Runs kubernetes-validate `--strict` on a YAML stream for a Kubernetes `version`: whether
/// every object validated, and what the tool said.
pub fn kubernetes_validate(tool: &Path, yaml: &str, version: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, yaml).expect("write");
    let out = Command::new(tool)
        .args(["--strict", "--quiet", "-k", version])
        .arg(&file)
        .output()
        .expect("kubernetes-validate runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}
