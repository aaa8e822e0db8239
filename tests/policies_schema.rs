//! The generated admission policies validate against the Kubernetes OpenAPI schemas
//! (kubernetes-validate, strict: an unknown field fails). ValidatingAdmissionPolicy `v1` is
//! served from 1.30, the oldest version checked; 1.34 is the first to serve
//! MutatingAdmissionPolicy `v1beta1`. Skipped when the tool is missing, except under `CI`.

mod common;

use std::path::{Path, PathBuf};

use common::tools::{find_kubernetes_validate, kubernetes_validate, required};
use earthly_webhook::config::Config;
use earthly_webhook::policies::{self, Selection};

/// Oldest and newest Kubernetes versions whose schemas are checked.
const VERSIONS: [&str; 3] = ["1.30.0", "1.34.0", "1.36.0"];

fn tool() -> Option<PathBuf> {
    required(
        find_kubernetes_validate(),
        "kubernetes-validate",
        "run scripts/install-tools.sh or set KUBERNETES_VALIDATE",
    )
}

fn configs() -> Vec<Config> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/policies");
    let mut out = vec![Config::default()];
    for name in ["config-globs.yaml", "config-sticky.yaml"] {
        out.push(Config::load(&data.join(name)).expect("config"));
    }
    out
}

#[test]
fn generated_policies_validate_against_the_kubernetes_schemas() {
    let Some(tool) = tool() else {
        return;
    };
    for config in configs() {
        let objects = policies::generate(&config, &Selection::default());
        let yaml = policies::output::yaml(&objects).expect("yaml");
        for version in VERSIONS {
            let (ok, text) = kubernetes_validate(&tool, &yaml, version);
            assert!(ok, "Kubernetes {version}:\n{text}");
        }
    }
}

/// The check above can fail: a misspelt field is refused.
#[test]
fn a_misspelt_field_is_refused() {
    let Some(tool) = tool() else {
        return;
    };
    let objects = policies::generate(&Config::default(), &Selection::default());
    let yaml = policies::output::yaml(&objects).expect("yaml").replacen(
        "messageExpression:",
        "messageExpresion:",
        1,
    );
    let (ok, text) = kubernetes_validate(&tool, &yaml, VERSIONS[0]);
    assert!(!ok && text.contains("messageExpresion"), "{text}");
}
