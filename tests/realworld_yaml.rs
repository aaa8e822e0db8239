//! Every real-world input (tests/data/realworld: Earthly manifests from public repositories and
//! the Kubernetes API's fully populated objects) through `check -o yaml`, the output read back the
//! way `check` (and kubectl) reads YAML: it holds exactly the objects as written with `check`'s
//! own patches applied, and checking it again changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use earthly_webhook::check::input::parse_documents;
use serde_json::Value;

const DATA: &str = "tests/data/realworld";

/// Files kubectl refuses as well: YAML that does not parse (the satellite example from the docs
/// site, as published), an env value written as a boolean.
const INPUT_ERRORS: &[&str] = &[
    "earthly-docs__self-hosted-satellite-pod.yaml",
    "jenkins-macos-cross-compiler__pod-template-verbatim.yaml",
];

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_earthly-webhook"))
        .arg("check")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("EARTHLY_WEBHOOK_CONFIG")
        .env_remove("EARTHLY_WEBHOOK_CHECK_NAMESPACE")
        .env_remove("EARTHLY_WEBHOOK_CHECK_MODE")
        .env_remove("EARTHLY_WEBHOOK_CHECK_OUTPUT")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .expect("binary runs")
}

/// The objects of a file as `check` reads them, in order.
fn objects(name: &str, text: &str) -> Vec<Value> {
    parse_documents(name, text)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_iter()
        .flat_map(|d| d.objects)
        .map(|o| o.value)
        .collect()
}

/// The object as the apiserver takes it on CREATE, the fields it sets itself left out (as
/// docs/check.md lists them).
fn without_server_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(field);
        }
    }
    object
}

fn inputs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["manifests", "k8s-api-testdata"]
        .iter()
        .flat_map(|d| std::fs::read_dir(Path::new(DATA).join(d)).expect("fixture dir"))
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "json")
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn yaml_output_is_the_input_with_the_patches_applied_and_checks_clean() {
    let files = inputs();
    assert!(files.len() > 50, "{} inputs", files.len());
    let mut round_tripped = 0;
    for path in &files {
        let file = path.to_str().expect("utf-8 path");
        let yaml = check(&["-f", file, "-o", "yaml"]);
        if yaml.status.code() == Some(2) {
            // Input errors, as kubectl has them too (docs/check.md); the roles in these files
            // are asserted by tests/realworld_roles.rs.
            assert!(
                INPUT_ERRORS.iter().any(|e| file.ends_with(e)),
                "{file}: exit 2"
            );
            continue;
        }
        let report = check(&["-f", file, "-o", "json"]);
        let report: Value = serde_json::from_slice(&report.stdout)
            .unwrap_or_else(|e| panic!("{file}: -o json: {e}"));
        let reported = report["objects"].as_array().expect("objects");

        let written = std::fs::read_to_string(path).expect("read");
        let originals = objects(file, &written);
        assert_eq!(reported.len(), originals.len(), "{file}: objects reported");
        // Denied objects are left out of the output.
        let admitted: Vec<(&Value, &Value)> = originals
            .iter()
            .zip(reported)
            .filter(|(_, r)| r["verdict"] != "denied")
            .collect();
        let output = String::from_utf8(yaml.stdout).expect("utf-8 output");
        let reread = objects("<output>", &output);
        assert_eq!(
            reread.len(),
            admitted.len(),
            "{file}: objects in the output"
        );
        for ((original, r), again) in admitted.into_iter().zip(&reread) {
            let patch: json_patch::Patch =
                serde_json::from_value(r["patch"].clone()).expect("patch");
            let mut expected = without_server_fields(original);
            json_patch::patch(&mut expected, &patch).expect("the patch applies");
            assert_eq!(again, &expected, "{file}: {}", r["name"]);
        }

        round_tripped += 1;
        if reread.is_empty() {
            continue;
        }
        // Checked again, the output needs no change and reads back the same.
        let dir = std::env::temp_dir().join(format!("realworld-yaml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let out_file = dir
            .join(path.file_name().expect("name"))
            .with_extension("yaml");
        std::fs::write(&out_file, &output).expect("write output");
        let out_path = out_file.to_str().expect("utf-8");
        let second = check(&["-f", out_path, "-o", "json"]);
        let second: Value = serde_json::from_slice(&second.stdout)
            .unwrap_or_else(|e| panic!("{file}: {e}: {}", String::from_utf8_lossy(&second.stderr)));
        assert_eq!(second["summary"]["mutated"], 0, "{file}: {second:#}");
        let again = check(&["-f", out_path, "-o", "yaml"]);
        assert_eq!(
            String::from_utf8_lossy(&again.stdout),
            output,
            "{file}: the output written again"
        );
    }
    assert_eq!(round_tripped + INPUT_ERRORS.len(), files.len());
}
