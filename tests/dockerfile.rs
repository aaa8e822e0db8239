//! The Dockerfile builds what CI builds. No container engine runs in CI, so the image build is
//! checked by reading it: its `cargo build` is the one `.ci/run` runs, its cargo-chef
//! dependency layer is cooked with the same flags (or the real build would not reuse it), the
//! binary it copies is the one that build writes, and its Rust image is the toolchain running
//! these tests.

use std::path::Path;
use std::process::Command;

fn read(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Shell text with backslash-newline continuations joined and comments dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The arguments of every `<program>` command (e.g. "cargo build") in the text, each ending at
/// `&&`, `;`, `|` or the end of its line.
fn commands(text: &str, program: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for line in logical_lines(text) {
        let mut rest = line.as_str();
        while let Some(at) = rest.find(program) {
            let after = &rest[at + program.len()..];
            let end = after.find(['&', ';', '|']).unwrap_or(after.len());
            found.push(after[..end].split_whitespace().map(str::to_owned).collect());
            rest = &after[end..];
        }
    }
    found
}

fn the_one(mut found: Vec<Vec<String>>, what: &str) -> Vec<String> {
    assert_eq!(found.len(), 1, "expected one {what}, found {found:?}");
    found.remove(0)
}

fn profile_of(args: &[String]) -> &str {
    let at = args
        .iter()
        .position(|a| a == "--profile")
        .unwrap_or_else(|| panic!("no --profile in {args:?}"));
    args.get(at + 1).expect("--profile has a value")
}

#[test]
fn dockerfile_runs_the_build_command_of_ci() {
    let docker = the_one(
        commands(&read("Dockerfile"), "cargo build"),
        "cargo build in the Dockerfile",
    );
    let ci = commands(&read(".ci/run"), "cargo build");
    assert!(
        ci.contains(&docker),
        "the Dockerfile runs `cargo build {}`, which .ci/run never runs (it runs {ci:?}); \
         make .ci/run's release step and the Dockerfile run the same command",
        docker.join(" ")
    );
    assert!(docker.contains(&"--locked".to_owned()), "{docker:?}");
    assert_eq!(
        profile_of(&docker),
        "dist",
        "the image ships the dist profile"
    );
}

#[test]
fn dependency_layer_is_cooked_with_the_flags_of_the_build() {
    let dockerfile = read("Dockerfile");
    let build = the_one(commands(&dockerfile, "cargo build"), "cargo build");
    let mut cook = the_one(commands(&dockerfile, "cargo chef cook"), "cargo chef cook");
    let recipe = cook
        .iter()
        .position(|a| a == "--recipe-path")
        .expect("cook names its recipe");
    cook.drain(recipe..recipe + 2);
    assert_eq!(
        cook, build,
        "cargo chef cook must take the build's flags, or the build recompiles every dependency"
    );
}

#[test]
fn image_copies_the_binary_the_build_writes() {
    let dockerfile = read("Dockerfile");
    let build = the_one(commands(&dockerfile, "cargo build"), "cargo build");
    let binary = format!("target/{}/earthly-webhook ", profile_of(&build));
    let copy = logical_lines(&dockerfile)
        .into_iter()
        .find(|l| l.starts_with("COPY --from=builder"))
        .expect("the runtime stage copies from the builder");
    assert!(copy.contains(&binary), "{copy:?} does not copy {binary}");
}

#[test]
fn every_rust_stage_uses_the_toolchain_ci_runs() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let out = Command::new(rustc)
        .arg("--version")
        .output()
        .expect("rustc runs");
    let version = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (...)" -> "1.95"
    let minor: String = version
        .split_whitespace()
        .nth(1)
        .expect("rustc prints its version")
        .splitn(3, '.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    let froms: Vec<String> = logical_lines(&read("Dockerfile"))
        .into_iter()
        .filter(|l| l.starts_with("FROM rust:"))
        .collect();
    assert!(!froms.is_empty(), "no Rust stage in the Dockerfile");
    for from in froms {
        assert!(
            from.starts_with(&format!("FROM rust:{minor}-")),
            "{from:?} is not the toolchain CI runs (rustc {minor})"
        );
    }
}
