//! The chart's `engine: admissionPolicies | both`: `charts/earthly-webhook/files/admission-policies.yaml`
//! holds the generated policies for the chart's default `config` and must be fresh (regenerate
//! with `EARTHLY_WEBHOOK_UPDATE_CHART=1 cargo test --test policies_chart`), and the chart renders
//! them with real helm, validated by kubernetes-validate, and refuses what it cannot honour.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::tools::{find_helm, find_kubernetes_validate, kubernetes_validate, required};
use earthly_webhook::config::Config;
use earthly_webhook::policies::{self, Selection};
use serde_json::{Value, json};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("charts/earthly-webhook")
}

const GENERATED: &str = "files/admission-policies.yaml";

/// The chart's default `config`, as values.yaml writes it.
fn values_config() -> Value {
    let text = std::fs::read_to_string(chart().join("values.yaml")).expect("values.yaml");
    let values: Value = serde_yaml_ng::from_str(&text).expect("values.yaml is YAML");
    values["config"].clone()
}

/// The generated file for the chart's default config.
fn generated() -> String {
    let raw = values_config();
    let mut server = raw.clone();
    // As the ConfigMap template does: an empty source means the server's default.
    if server["mutation"]["scratchVolume"]["source"] == json!({})
        && let Some(s) = server["mutation"]["scratchVolume"].as_object_mut()
    {
        s.remove("source");
    }
    let yaml = serde_yaml_ng::to_string(&server).expect("config YAML");
    let config = Config::from_yaml(&yaml, "values.yaml config").expect("the chart's config");
    let objects = policies::generate(&config, &Selection::default());
    let of = |kind: &str, warnings: bool| -> Vec<Value> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .filter(|o| {
                let name = o["metadata"]["name"].as_str().unwrap_or_default();
                name.ends_with("-warnings") == warnings
            })
            .cloned()
            .collect()
    };
    let file = json!({
        // The chart refuses to render these for any other config.
        "generatedFor": {
            "detection": raw["detection"],
            "mutation": raw["mutation"],
            "buildkitd": {"instances": raw["buildkitd"]["instances"]},
        },
        "validating": of("ValidatingAdmissionPolicy", false),
        "warnings": of("ValidatingAdmissionPolicy", true),
        "mutating": of("MutatingAdmissionPolicy", false),
    });
    format!(
        "# Generated from values.yaml's `config` by tests/policies_chart.rs; do not edit. After a change\n\
         # to the config defaults or the policies run:\n\
         #   EARTHLY_WEBHOOK_UPDATE_CHART=1 cargo test --test policies_chart\n{}",
        serde_yaml_ng::to_string(&file).expect("YAML")
    )
}

#[test]
fn chart_policies_are_fresh() {
    let path = chart().join(GENERATED);
    let want = generated();
    if std::env::var_os("EARTHLY_WEBHOOK_UPDATE_CHART").is_some() {
        std::fs::write(&path, &want).expect("write the chart's policies");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale: run EARTHLY_WEBHOOK_UPDATE_CHART=1 cargo test --test policies_chart",
        path.display()
    );
}

/// `helm template` with `args`: the objects (and the text, for kubernetes-validate), or the
/// error text.
fn render_text(helm: &Path, args: &[&str]) -> Result<(String, Vec<Value>), String> {
    let out = Command::new(helm)
        .args(["template", "earthly-webhook"])
        .arg(chart())
        .args(["--namespace", "earthly-system"])
        .args(args)
        .output()
        .expect("helm runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let objects = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect();
    Ok((text, objects))
}

fn render(helm: &Path, args: &[&str]) -> Result<Vec<Value>, String> {
    render_text(helm, args).map(|(_, objects)| objects)
}

const APIS: &[&str] = &[
    "--kube-version",
    "1.34.0",
    "--api-versions",
    "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
    "--api-versions",
    "admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy",
];

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    k.sort();
    k.dedup();
    k
}

fn with_apis(extra: &[&'static str]) -> Vec<&'static str> {
    APIS.iter().copied().chain(extra.iter().copied()).collect()
}

#[test]
fn admission_policies_engine_installs_the_policies_and_no_webhook() {
    let Some(helm) = required(
        find_helm(),
        "helm",
        "set HELM or run scripts/install-tools.sh",
    ) else {
        return;
    };
    let (text, objects) =
        render_text(&helm, &with_apis(&["--set", "engine=admissionPolicies"])).expect("renders");
    let kinds = kinds(&objects);
    for absent in [
        "Deployment",
        "Service",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        assert!(
            !kinds.contains(&absent.to_owned()),
            "{absent} rendered: {kinds:?}"
        );
    }
    let policy_names = |kind: &str| -> Vec<&str> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .filter_map(|o| o["metadata"]["name"].as_str())
            .collect()
    };
    assert_eq!(policy_names("ValidatingAdmissionPolicy").len(), 8);
    // Four modes for each decision policy, one Warn binding for each warnings policy.
    assert_eq!(policy_names("ValidatingAdmissionPolicyBinding").len(), 20);
    let warn = objects
        .iter()
        .find(|o| {
            o["metadata"]["name"] == "earthly-webhook-pod-warnings"
                && o["kind"] == "ValidatingAdmissionPolicyBinding"
        })
        .expect("warnings binding");
    assert_eq!(warn["spec"]["validationActions"], json!(["Warn"]));
    assert_eq!(
        policy_names("MutatingAdmissionPolicy"),
        ["earthly-webhook-pods"]
    );
    // The bindings select as the chart's webhook entries do, from the values.
    let enforce = objects
        .iter()
        .find(|o| o["metadata"]["name"] == "earthly-webhook-workloads-enforce")
        .expect("enforce binding");
    assert_eq!(enforce["spec"]["validationActions"], json!(["Deny"]));
    let exprs = &enforce["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"];
    assert_eq!(
        exprs[0],
        json!({"key": "earthly.dev/webhook", "operator": "In", "values": ["enabled"]})
    );
    assert_eq!(
        exprs[1],
        json!({"key": "earthly.dev/policy", "operator": "In", "values": ["enforce"]})
    );
    assert_eq!(exprs[2]["values"], json!(["earthly-system", "kube-system"]));
    // The rendered policies are the generated ones.
    let generated = policies::generate(&Config::default(), &Selection::default());
    let vap = generated
        .iter()
        .find(|o| o["metadata"]["name"] == "earthly-webhook-workloads")
        .expect("generated");
    let rendered = objects
        .iter()
        .find(|o| {
            o["metadata"]["name"] == "earthly-webhook-workloads"
                && o["kind"] == "ValidatingAdmissionPolicy"
        })
        .expect("rendered");
    assert_eq!(rendered["spec"], vap["spec"]);
    validate(&text);
}

#[test]
fn both_engines_keep_every_kind_at_the_webhook_for_its_lookup_rules() {
    let Some(helm) = required(
        find_helm(),
        "helm",
        "set HELM or run scripts/install-tools.sh",
    ) else {
        return;
    };
    let (text, objects) =
        render_text(&helm, &with_apis(&["--set", "engine=both"])).expect("renders");
    let kinds = kinds(&objects);
    assert!(
        kinds.contains(&"Deployment".to_owned())
            && kinds.contains(&"ValidatingAdmissionPolicy".to_owned()),
        "{kinds:?}"
    );
    let vwc = objects
        .iter()
        .find(|o| o["kind"] == "ValidatingWebhookConfiguration")
        .expect("webhook config");
    let resources: Vec<&str> = vwc["webhooks"][0]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["resources"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        resources,
        [
            "pods",
            "deployments",
            "statefulsets",
            "replicasets",
            "daemonsets",
            "replicationcontrollers",
            "jobs",
            "cronjobs",
            "deployments/scale",
            "statefulsets/scale",
            "replicasets/scale",
            "horizontalpodautoscalers",
            "services"
        ]
    );
    validate(&text);
}

#[test]
fn the_chart_refuses_what_the_policies_cannot_honour() {
    let Some(helm) = required(
        find_helm(),
        "helm",
        "set HELM or run scripts/install-tools.sh",
    ) else {
        return;
    };
    let old = render(
        &helm,
        &[
            "--kube-version",
            "1.29.0",
            "--set",
            "engine=admissionPolicies",
        ],
    )
    .expect_err("1.29");
    assert!(old.contains("ValidatingAdmissionPolicy"), "{old}");
    let no_map = render(
        &helm,
        &[
            "--kube-version",
            "1.33.0",
            "--api-versions",
            "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
            "--set",
            "engine=admissionPolicies",
        ],
    )
    .expect_err("no MutatingAdmissionPolicy API");
    assert!(
        no_map.contains("admissionPolicies.mutating=false"),
        "{no_map}"
    );
    let ok = render(
        &helm,
        &[
            "--kube-version",
            "1.33.0",
            "--api-versions",
            "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
            "--set",
            "engine=admissionPolicies",
            "--set",
            "admissionPolicies.mutating=false",
        ],
    )
    .expect("validating policies alone");
    assert!(!kinds(&ok).contains(&"MutatingAdmissionPolicy".to_owned()));
    let custom = render(
        &helm,
        &with_apis(&[
            "--set",
            "engine=admissionPolicies",
            "--set",
            "config.mutation.cniMtu=1450",
        ]),
    )
    .expect_err("custom config");
    assert!(
        custom.contains("earthly-webhook policies --config"),
        "{custom}"
    );
}

/// Every rendered object validates against the Kubernetes 1.34 schemas.
fn validate(render: &str) {
    let Some(tool) = required(
        find_kubernetes_validate(),
        "kubernetes-validate",
        "run scripts/install-tools.sh or set KUBERNETES_VALIDATE",
    ) else {
        return;
    };
    let (ok, text) = kubernetes_validate(&tool, render, "1.34.0");
    assert!(ok, "{text}");
}
