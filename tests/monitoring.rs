//! The chart's monitoring objects against their real consumers. The chart is rendered with
//! helm (`ci/monitoring-values.yaml`); the real binary is started and scraped, and:
//! - the PrometheusRule's groups pass `promtool check rules`;
//! - `promtool test rules` feeds the alerts series named and labelled exactly as in the live
//!   scrape (so a renamed metric or label fails here) and asserts each alert fires and stays
//!   quiet when it should;
//! - every query of the Grafana dashboard, run by promtool over the scraped series, returns data;
//! - the ServiceMonitor scrapes the admin port of the webhook pods, and every alert links its
//!   section of docs/operations.md.
//!
//! Without helm or promtool the tests are skipped with a message, except under `CI`, where that
//! is a failure. The files handed to promtool stay in `target/tmp/monitoring/`, to rerun by hand.

mod common;
mod monitoring {
    pub mod cases;
    pub mod scrape;
}

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::tools::{find_helm, find_promtool, required};
use monitoring::cases::{ALERTS, Setup};
use monitoring::scrape::{self, Scrape};
use serde::Deserialize as _;
use serde_json::{Value, json};

const RELEASE: &str = "earthly-webhook";
const NAMESPACE: &str = "earthly-system";
const SCENARIO: &str = "ci/monitoring-values.yaml";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Everything the tests share: made once, `None` when a tool is missing (outside CI).
struct Fixture {
    promtool: PathBuf,
    objects: Vec<Value>,
    scrape: Scrape,
    /// The scenario's values, and the chart's defaults under them.
    values: Value,
    defaults: Value,
}

fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let helm = required(
                find_helm(),
                "helm",
                "set HELM or run scripts/install-tools.sh",
            )?;
            let promtool = required(
                find_promtool(),
                "promtool",
                "set PROMTOOL or install Debian's prometheus package: scripts/install-tools.sh",
            )?;
            let fixture = Fixture {
                promtool,
                objects: render(&helm),
                scrape: scrape::live(),
                values: yaml_file(&repo().join("charts/earthly-webhook").join(SCENARIO)),
                defaults: yaml_file(&repo().join("charts/earthly-webhook/values.yaml")),
            };
            fixture.write_rule_file();
            Some(fixture)
        })
        .as_ref()
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn render(helm: &Path) -> Vec<Value> {
    let out = Command::new(helm)
        .args(["template", RELEASE])
        .arg(repo().join("charts/earthly-webhook"))
        .args(["--namespace", NAMESPACE, "-f"])
        .arg(repo().join("charts/earthly-webhook").join(SCENARIO))
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

impl Fixture {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    /// The one object of `kind` whose component label is `component`.
    fn the(&self, kind: &str, component: &str) -> &Value {
        let found: Vec<&Value> = self
            .all(kind)
            .into_iter()
            .filter(|o| o["metadata"]["labels"]["app.kubernetes.io/component"] == component)
            .collect();
        assert_eq!(found.len(), 1, "one {component} {kind} in the render");
        found[0]
    }

    fn rules(&self) -> &Vec<Value> {
        let groups = self.the("PrometheusRule", "metrics")["spec"]["groups"]
            .as_array()
            .expect("groups");
        assert_eq!(groups.len(), 1, "one rule group");
        groups[0]["rules"].as_array().expect("rules")
    }

    /// Labels the Prometheus Operator gives a target of the ServiceMonitor (one pod).
    fn target_labels(&self) -> BTreeMap<String, String> {
        let service = self.the("Service", "metrics");
        let name = service["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let port = service["spec"]["ports"][0]["name"]
            .as_str()
            .expect("port name");
        BTreeMap::from([
            ("container".to_owned(), "webhook".to_owned()),
            ("endpoint".to_owned(), port.to_owned()),
            ("instance".to_owned(), "10.0.0.7:8080".to_owned()),
            ("job".to_owned(), name.clone()),
            ("namespace".to_owned(), NAMESPACE.to_owned()),
            ("pod".to_owned(), format!("{RELEASE}-5d9c7b6f4-x2x4z")),
            ("service".to_owned(), name),
        ])
    }

    /// A directory under target/tmp for the files promtool reads.
    fn workdir(&self) -> PathBuf {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("monitoring");
        std::fs::create_dir_all(&dir).expect("target/tmp/monitoring");
        dir
    }

    /// The PrometheusRule's groups as a Prometheus rule file, written once by the fixture
    /// (tests run in parallel and must not rewrite a file another one's promtool reads).
    fn rule_file(&self) -> PathBuf {
        self.workdir().join("rules.yaml")
    }

    fn write_rule_file(&self) {
        let groups = &self.the("PrometheusRule", "metrics")["spec"]["groups"];
        write_yaml(&self.rule_file(), &json!({ "groups": groups }));
    }

    /// Runs promtool, asserting success; returns its output.
    fn promtool(&self, args: &[&str], file: &Path) -> String {
        let out = Command::new(&self.promtool)
            .args(args)
            .arg(file)
            .current_dir(file.parent().expect("dir"))
            .output()
            .expect("promtool runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "promtool {args:?} {}:\n{text}",
            file.display()
        );
        text
    }

    /// A value as the render saw it: the scenario's, else the chart's default.
    fn setting(&self, path: &[&str]) -> Value {
        let at = |root: &Value| path.iter().fold(root, |v, k| &v[*k]).clone();
        match at(&self.values) {
            Value::Null => at(&self.defaults),
            v => v,
        }
    }
}

fn write_yaml(path: &Path, value: &Value) {
    let text = serde_yaml_ng::to_string(value).expect("YAML");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[test]
fn prometheus_rule_passes_promtool_check_rules() {
    let Some(f) = fixture() else { return };
    let out = f.promtool(&["check", "rules"], &f.rule_file());
    let want = format!("SUCCESS: {} rules found", f.rules().len());
    assert!(out.contains(&want), "{out}");
    let names: BTreeSet<&str> = f
        .rules()
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(
        names,
        ALERTS.iter().copied().collect(),
        "alerts of the rule vs the test's"
    );
}

#[test]
fn alerts_fire_and_stay_quiet_on_the_scraped_series() {
    let Some(f) = fixture() else { return };
    let request_timeout = {
        let args =
            f.the("Deployment", "webhook")["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_array()
                .expect("args");
        let flag = args
            .iter()
            .filter_map(Value::as_str)
            .find_map(|a| a.strip_prefix("--request-timeout="))
            .expect("--request-timeout");
        humantime::parse_duration(flag)
            .expect("duration")
            .as_secs_f64()
    };
    let timeout = f.setting(&["webhooks", "timeoutSeconds"]);
    let timeout = timeout.as_f64().expect("timeoutSeconds");
    let ratio = f.setting(&["metrics", "prometheusRule", "latency", "timeoutRatio"]);
    let ratio = ratio.as_f64().expect("timeoutRatio");
    let alert_labels = f.setting(&["metrics", "prometheusRule", "alertLabels"]);
    let setup = Setup {
        scrape: &f.scrape,
        target: f.target_labels(),
        alert_labels: serde_json::from_value(alert_labels).expect("string map"),
        latency_threshold: ratio * timeout,
        request_timeout,
        annotations: f
            .rules()
            .iter()
            .map(|r| {
                let notes = serde_json::from_value(r["annotations"].clone()).expect("strings");
                (r["alert"].as_str().expect("alert").to_owned(), notes)
            })
            .collect(),
    };
    let slow = f
        .rules()
        .iter()
        .find(|r| r["alert"] == "EarthlyWebhookSlowResponses")
        .expect("latency alert");
    let expr = slow["expr"].as_str().expect("expr");
    assert!(
        expr.trim_end().ends_with(&format!("> {}", ratio * timeout)),
        "the latency threshold is {ratio} x {timeout}s: {expr}"
    );
    let rules = f.rule_file();
    let tests = f.workdir().join("alerts.test.yaml");
    write_yaml(
        &tests,
        &json!({
            "rule_files": [rules.file_name().expect("name").to_string_lossy()],
            "evaluation_interval": "1m",
            "tests": setup.promtool_tests(),
        }),
    );
    let out = f.promtool(&["test", "rules"], &tests);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// A dashboard query as Prometheus receives it from Grafana: this release's namespace and job
/// chosen, the rate interval resolved.
fn as_grafana_sends_it(expr: &str, job: &str) -> String {
    expr.replace("$namespace", NAMESPACE)
        .replace("$job", job)
        .replace("$__rate_interval", "5m")
}

/// Every PromQL query of the dashboard: panel targets, and variable queries
/// (`label_values(selector, label)` as the `count by (label)` it asks for).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            queries.push((format!("panel {:?}", panel["title"]), expr.to_owned()));
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if var["type"] != "query" {
            continue;
        }
        let q = var["query"]["query"].as_str().expect("variable query");
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .expect("label_values(selector, label)");
        let (selector, label) = inner.rsplit_once(',').expect("selector, label");
        let expr = format!("count by ({}) ({})", label.trim(), selector.trim());
        queries.push((format!("variable {:?}", var["name"]), expr));
    }
    queries
}

#[test]
fn every_dashboard_query_returns_data_from_the_scraped_series() {
    let Some(f) = fixture() else { return };
    let configmap = f.the("ConfigMap", "metrics");
    assert_eq!(configmap["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(configmap["metadata"]["namespace"], "monitoring");
    let text = configmap["data"]["earthly-webhook.json"]
        .as_str()
        .expect("dashboard JSON");
    let shipped = std::fs::read_to_string(
        repo().join("charts/earthly-webhook/dashboards/earthly-webhook.json"),
    )
    .expect("dashboard file");
    assert_eq!(
        text.trim(),
        shipped.trim(),
        "the ConfigMap carries the file unchanged"
    );
    let dashboard: Value = serde_json::from_str(text).expect("dashboard is JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 12, "{} queries", queries.len());

    // Names first, for a clear message: every earthly_webhook_ name is one the server exports.
    let scraped = f.scrape.names();
    for (what, expr) in &queries {
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|t| t.starts_with("earthly_webhook_"))
        {
            assert!(
                scraped.contains(name),
                "{what} queries {name}, not in /metrics: {scraped:?}"
            );
        }
    }
    // Then Prometheus' own engine: each query, over every scraped series, returns something.
    let target = f.target_labels();
    let series: Vec<Value> = f
        .scrape
        .series
        .iter()
        .map(|s| json!({"series": s.scraped_by(&target).notation(), "values": "1+1x30"}))
        .collect();
    let expr_tests: Vec<Value> = queries
        .iter()
        .map(|(_, expr)| {
            json!({
                "expr": format!("count({}) > bool 0", as_grafana_sends_it(expr, &target["job"])),
                "eval_time": "10m",
                "exp_samples": [{"labels": "{}", "value": 1}],
            })
        })
        .collect();
    let tests = f.workdir().join("dashboard.test.yaml");
    write_yaml(
        &tests,
        &json!({
            "tests": [{
                "name": "every dashboard query returns data",
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": expr_tests,
            }],
        }),
    );
    let out = f.promtool(&["test", "rules"], &tests);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn service_monitor_scrapes_the_admin_port_of_the_webhook_pods() {
    let Some(f) = fixture() else { return };
    let monitor = f.the("ServiceMonitor", "metrics");
    let metrics = f.the("Service", "metrics");
    let webhook = f.the("Service", "webhook");
    let selects = |service: &Value| {
        let labels = &service["metadata"]["labels"];
        monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("matchLabels")
            .iter()
            .all(|(k, v)| &labels[k] == v)
    };
    assert!(
        selects(metrics),
        "the ServiceMonitor does not select the metrics Service"
    );
    assert!(
        !selects(webhook),
        "the ServiceMonitor also selects the webhook Service"
    );
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!([NAMESPACE])
    );
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "15s");
    let port = &metrics["spec"]["ports"][0];
    assert_eq!(
        endpoint["port"], port["name"],
        "the endpoint names the Service port"
    );
    // The Service sends it to the container's admin port, where --admin-listen serves /metrics.
    let deployment = f.the("Deployment", "webhook");
    assert_eq!(
        metrics["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let admin = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == port["targetPort"])
        .expect("the metrics Service targets a named container port");
    let admin_port = admin["containerPort"].as_u64().expect("port");
    let listen = format!("--admin-listen=0.0.0.0:{admin_port}");
    assert!(
        container["args"]
            .as_array()
            .expect("args")
            .iter()
            .any(|a| a == listen.as_str()),
        "the targeted port {admin_port} is not where the admin listener binds"
    );
}

/// GitHub's anchor of a Markdown heading: lowercased, punctuation but `-` and `_` dropped,
/// spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_has_its_runbook_section_and_annotations() {
    let Some(f) = fixture() else { return };
    let doc =
        std::fs::read_to_string(repo().join("docs/operations.md")).expect("docs/operations.md");
    let anchors: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(anchor)
        .collect();
    let base = f.setting(&["metrics", "prometheusRule", "runbookBaseUrl"]);
    let base = base.as_str().expect("runbookBaseUrl");
    for rule in f.rules() {
        let name = rule["alert"].as_str().expect("alert");
        let notes = &rule["annotations"];
        for key in ["summary", "description"] {
            let text = notes[key].as_str().unwrap_or_default();
            assert!(
                text.len() > 20,
                "{name}: {key} missing or too short: {text:?}"
            );
        }
        let url = notes["runbook_url"].as_str().expect("runbook_url");
        let fragment = url
            .strip_prefix(&format!("{base}#"))
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not {base}#..."));
        assert!(
            anchors.contains(fragment),
            "{name}: docs/operations.md has no section #{fragment} (sections: {anchors:?})"
        );
        assert!(
            ["warning", "critical"].contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity"
        );
    }
    let alerts: BTreeSet<String> = f
        .rules()
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .map(str::to_lowercase)
        .collect();
    let documented: BTreeSet<String> = anchors
        .iter()
        .filter(|a| a.starts_with("earthlywebhook"))
        .cloned()
        .collect();
    assert_eq!(documented, alerts, "runbook sections vs alerts");
}
