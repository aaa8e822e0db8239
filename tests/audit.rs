//! `audit` against the recorded responses of a real kube-apiserver v1.34 (tests/data/
//! apiserver-responses, see its README), replayed through kube's `tower-test` mock: the findings,
//! the paging, the retry after a `410 Gone`, the messages for a 403 and a 400; the same objects
//! through `check` give the same verdicts and warnings; the PolicyReports fit the CRD's schema.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use earthly_webhook::audit::output::{self, NamespaceAudit};
use earthly_webhook::audit::scope::{Requested, Selector};
use earthly_webhook::audit::{self, AuditError, ScanOptions, judge};
use earthly_webhook::check::input::Document;
use earthly_webhook::check::{self, CheckOptions};
use earthly_webhook::config::Mode;
use earthly_webhook::review::Policy;
use http_body_util::BodyExt as _;
use hyper::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

const NS: &str = "ci-audit-capture";

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/apiserver-responses")
}

fn fixture(name: &str) -> Value {
    let path = data_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn empty_list() -> Value {
    json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "418"}, "items": []})
}

fn gone() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results.",
        "reason": "Expired", "code": 410})
}

/// The recorded answer to a request, by path and query; collections not captured are empty.
fn recorded(uri: &str) -> (u16, Value) {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let base = format!("/namespaces/{NS}/");
    let file = match path {
        "/api/v1/namespaces" => "namespaces-list-opted-in.json",
        p if p.ends_with(&format!("{base}pods")) => {
            if query.contains("continue=") {
                "pods-list-page2-limit2.json"
            } else {
                "pods-list-page1-limit2.json"
            }
        }
        p if p.ends_with(&format!("{base}deployments")) => "deployments-list.json",
        p if p.ends_with(&format!("{base}replicasets")) => "replicasets-list.json",
        p if p.ends_with(&format!("{base}services")) => "services-list.json",
        p if p.ends_with(&format!("{base}cronjobs")) => "cronjobs-list.json",
        "/apis/autoscaling/v2/namespaces/ci-audit-capture/horizontalpodautoscalers" => {
            "horizontalpodautoscalers-v2-list.json"
        }
        _ => return (200, empty_list()),
    };
    (200, fixture(file))
}

/// One request the fake apiserver received.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    uri: String,
    content_type: String,
    body: Vec<u8>,
}

type Answer = Box<dyn FnMut(&Call) -> (u16, Value) + Send>;

/// Answers GETs from the recording, anything else with `other`.
fn recorded_or(mut other: impl FnMut(&Call) -> (u16, Value) + Send + 'static) -> Answer {
    Box::new(move |call: &Call| {
        if call.method == "GET" && !call.uri.contains("policyreports") {
            recorded(&call.uri)
        } else {
            other(call)
        }
    })
}

/// A fake apiserver: answers every request with `answer` and logs it.
fn apiserver(mut answer: Answer) -> (kube::Client, Arc<Mutex<Vec<Call>>>) {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .expect("request body")
                .to_bytes()
                .to_vec();
            let call = Call {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                content_type: parts
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                body,
            };
            let (status, body) = answer(&call);
            seen.lock().expect("log").push(call);
            let response = Response::builder()
                .status(StatusCode::from_u16(status).expect("status"))
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).expect("json")))
                .expect("response");
            send.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), log)
}

fn options() -> ScanOptions {
    ScanOptions {
        requested: Requested::Selected,
        selector: Selector {
            excluded: vec!["earthly-webhook".to_owned()],
            ..Selector::default()
        },
        // The page size of the recorded pod pages.
        page_size: 2,
        write_reports: false,
        progress: false,
    }
}

fn policy() -> Policy {
    check::check_policy(None).expect("default policy")
}

async fn scan_with(answer: Answer) -> (Result<Vec<NamespaceAudit>, AuditError>, Vec<String>) {
    let (result, calls) = scan_calls(answer, &options()).await;
    (result, calls.into_iter().map(|c| c.uri).collect())
}

async fn scan_calls(
    answer: Answer,
    options: &ScanOptions,
) -> (Result<Vec<NamespaceAudit>, AuditError>, Vec<Call>) {
    let (client, log) = apiserver(answer);
    let result = audit::scan(client, &policy(), options).await;
    let log = log.lock().expect("log").clone();
    (result, log)
}

fn find<'a>(scan: &'a [NamespaceAudit], kind: &str) -> &'a judge::Audited {
    scan[0]
        .objects
        .iter()
        .find(|o| o.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:#?}", scan[0].objects))
}

#[tokio::test]
async fn finds_what_breaks_the_policy_in_the_recorded_namespace() {
    let (scan, _) = scan_with(Box::new(|c: &Call| recorded(&c.uri))).await;
    let scan = scan.expect("scan");
    assert_eq!(scan.len(), 1);
    assert_eq!((scan[0].name.as_str(), scan[0].mode), (NS, Mode::Enforce));
    // The pods and the ReplicaSet belong to the Deployment: judged through its template.
    let kinds: Vec<&str> = scan[0].objects.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Deployment",
            "CronJob",
            "HorizontalPodAutoscaler",
            "Service"
        ]
    );
    let deployment = find(&scan, "Deployment");
    assert_eq!(deployment.verdict, check::Outcome::Denied);
    assert!(
        !deployment.findings.violations.is_empty(),
        "{deployment:#?}"
    );
    let cronjob = find(&scan, "CronJob");
    assert_eq!(
        cronjob.findings.mutations,
        [
            "runner earthly in CronJob ci-audit-capture/nightly is not privileged; the webhook would set privileged and mount a scratch volume at /tmp/earthly"
        ]
    );
    assert_eq!(audit::exit_status(&scan), 1);
}

#[tokio::test]
async fn pods_are_read_page_by_page_with_the_continue_token() {
    let (scan, log) = scan_with(Box::new(|c: &Call| recorded(&c.uri))).await;
    scan.expect("scan");
    let token = fixture("pods-list-page1-limit2.json")["metadata"]["continue"]
        .as_str()
        .expect("token")
        .to_owned();
    let pods: Vec<&String> = log.iter().filter(|u| u.contains("/pods?")).collect();
    assert_eq!(pods.len(), 2, "{log:#?}");
    assert!(pods[0].contains("limit=2") && !pods[0].contains("continue="));
    assert!(
        pods[1].contains(&format!("continue={token}")),
        "{}",
        pods[1]
    );
    assert_eq!(
        log[0],
        "/api/v1/namespaces?&labelSelector=earthly.dev%2Fwebhook%3Denabled&limit=2"
    );
}

#[tokio::test]
async fn an_expired_continue_token_rereads_the_namespace_from_the_start() {
    let (plain, _) = scan_with(Box::new(|c: &Call| recorded(&c.uri))).await;
    let mut expired_once = false;
    let (retried, log) = scan_with(Box::new(move |c: &Call| {
        let uri = c.uri.as_str();
        if uri.contains("/pods?") && uri.contains("continue=") && !expired_once {
            expired_once = true;
            return (410, gone());
        }
        recorded(uri)
    }))
    .await;
    assert_eq!(retried.expect("retried"), plain.expect("plain"));
    let deployments = log.iter().filter(|u| u.contains("/deployments?")).count();
    let first_pages = log
        .iter()
        .filter(|u| u.contains("/pods?") && !u.contains("continue="))
        .count();
    assert_eq!((deployments, first_pages), (2, 2), "{log:#?}");
}

#[tokio::test]
async fn a_continue_token_that_keeps_expiring_is_an_error_not_a_short_list() {
    let (scan, _) = scan_with(Box::new(|c: &Call| {
        let uri = c.uri.as_str();
        if uri.contains("continue=") {
            return (410, gone());
        }
        recorded(uri)
    }))
    .await;
    let error = scan.expect_err("expired").to_string();
    assert!(
        error.starts_with(
            "the continue token for pods in namespace ci-audit-capture expired (410 Gone)"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_403_names_the_verb_and_resource_refused() {
    let (scan, _) = scan_with(Box::new(|c: &Call| {
        let uri = c.uri.as_str();
        if uri.contains("/pods?") {
            return (403, fixture("pods-list-forbidden-403.json"));
        }
        recorded(uri)
    }))
    .await;
    let error = scan.expect_err("forbidden").to_string();
    assert!(
        error.starts_with("permission denied: cannot list pods in namespace ci-audit-capture (HTTP 403: pods is forbidden: User \"system:serviceaccount:ci-audit-capture:nobody\" cannot list resource \"pods\""),
        "{error}"
    );
}

#[tokio::test]
async fn a_400_is_reported_with_the_apiservers_message() {
    let (scan, _) = scan_with(Box::new(|c: &Call| {
        let uri = c.uri.as_str();
        if uri.contains("continue=") {
            return (400, fixture("pods-list-bad-continue-400.json"));
        }
        recorded(uri)
    }))
    .await;
    let error = scan.expect_err("bad request").to_string();
    assert!(
        error.contains("HTTP 400 BadRequest: invalid continue token"),
        "{error}"
    );
}

/// Everything the scan read from the namespace, as the `check` input a user would write (what
/// `kubectl get deploy,rs,cronjob,pod,hpa,svc -o json` prints).
fn read_as_manifests() -> Vec<Document> {
    let files = [
        "deployments-list.json",
        "replicasets-list.json",
        "cronjobs-list.json",
        "pods-list-page1-limit2.json",
        "pods-list-page2-limit2.json",
        "horizontalpodautoscalers-v2-list.json",
        "services-list.json",
    ];
    let kinds = [
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("batch/v1", "CronJob"),
        ("v1", "Pod"),
        ("v1", "Pod"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("v1", "Service"),
    ];
    let mut items = Vec::new();
    for (file, (api_version, kind)) in files.iter().zip(kinds) {
        for mut item in fixture(file)["items"].as_array().expect("items").clone() {
            item["apiVersion"] = json!(api_version);
            item["kind"] = json!(kind);
            items.push(item);
        }
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    check::input::parse_documents("audit.json", &list.to_string()).expect("parses")
}

#[tokio::test]
async fn audit_and_check_give_the_same_verdicts_and_warnings() {
    let (scan, _) = scan_with(Box::new(|c: &Call| recorded(&c.uri))).await;
    let scan = scan.expect("scan");
    let audit_json: Value = serde_json::from_str(&output::json(&scan)).expect("audit json");
    let options = CheckOptions {
        namespace: NS.to_owned(),
        mode: Some(Mode::Enforce),
    };
    let report = check::check_documents(&policy(), read_as_manifests(), &options).await;
    let check_json: Value =
        serde_json::from_str(&check::output::json(&report)).expect("check json");
    let pick = |objects: &Value| -> Vec<(String, String, Value, Value)> {
        objects
            .as_array()
            .expect("objects")
            .iter()
            .map(|o| {
                (
                    o["kind"].as_str().unwrap_or_default().to_owned(),
                    o["name"].as_str().unwrap_or_default().to_owned(),
                    o["verdict"].clone(),
                    o["warnings"].clone(),
                )
            })
            .collect()
    };
    let from_audit = pick(&audit_json["namespaces"][0]["objects"]);
    // `check` also reports the ReplicaSet and pods; `audit` judges them through the Deployment.
    let from_check: Vec<_> = pick(&check_json["objects"])
        .into_iter()
        .filter(|c| from_audit.iter().any(|a| (&a.0, &a.1) == (&c.0, &c.1)))
        .collect();
    assert_eq!(from_audit, from_check);
    assert!(
        from_audit.iter().any(|o| o.2 == "denied"),
        "{from_audit:#?}"
    );
}

/// The CRD's schema, made strict: the apiserver prunes fields its structural schema does not
/// name, so a field the schema lacks would be lost silently; here it fails validation.
fn strict_crd_schema() -> Value {
    fn close(v: &mut Value) {
        if let Some(map) = v.as_object_mut() {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".to_owned(), json!(false));
            }
            for child in map.values_mut() {
                close(child);
            }
        } else if let Some(items) = v.as_array_mut() {
            items.iter_mut().for_each(close);
        }
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/earthly-webhook/files/wgpolicyk8s.io_policyreports.yaml");
    let text = std::fs::read_to_string(&path).expect("the vendored CRD");
    let crd: Value = serde_yaml_ng::from_str(&text).expect("CRD YAML");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha2");
    let mut schema = version["schema"]["openAPIV3Schema"].clone();
    close(&mut schema);
    schema
}

#[tokio::test]
async fn policy_reports_validate_against_the_crd_schema() {
    let (scan, _) = scan_with(Box::new(|c: &Call| recorded(&c.uri))).await;
    let scan = scan.expect("scan");
    let validator = jsonschema::validator_for(&strict_crd_schema()).expect("schema compiles");
    let reports = output::policy_reports(&scan, std::time::SystemTime::now());
    assert_eq!(reports.len(), 1);
    for report in &reports {
        let errors: Vec<String> = validator
            .iter_errors(report)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
    let report = &reports[0];
    assert_eq!(report["metadata"]["namespace"], NS);
    let fails = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["result"] == "fail")
        .count();
    assert_eq!(report["summary"]["fail"], json!(fails));
    assert!(fails > 0);
    // The schema does reject what the CRD does not allow.
    let mut bad = report.clone();
    bad["results"][0]["result"] = json!("bogus");
    assert!(!validator.is_valid(&bad));
    bad = report.clone();
    bad["results"][0]["source"] = json!("unknown field");
    assert!(!validator.is_valid(&bad));
}

#[tokio::test]
async fn text_report_matches_the_golden_file() {
    let (scan, _) = scan_with(Box::new(|c: &Call| recorded(&c.uri))).await;
    let text = output::text(&scan.expect("scan"));
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/audit_capture_text.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).expect("write golden");
    }
    let expected =
        std::fs::read_to_string(&golden).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(text, expected);
}

fn report_list(namespaces: &[&str]) -> Value {
    let items: Vec<Value> = namespaces
        .iter()
        .map(|ns| {
            json!({"metadata": {"name": "earthly-webhook", "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "earthly-webhook"}}})
        })
        .collect();
    json!({"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReportList",
        "metadata": {"resourceVersion": "500"}, "items": items})
}

fn writing() -> ScanOptions {
    ScanOptions {
        write_reports: true,
        ..options()
    }
}

#[tokio::test]
async fn write_reports_applies_one_report_per_namespace_and_deletes_stale_ones() {
    let answer = recorded_or(|call: &Call| match call.method.as_str() {
        "GET" => (200, report_list(&[NS, "left-the-scope"])),
        "PATCH" => (
            200,
            serde_json::from_slice(&call.body).expect("applied JSON"),
        ),
        _ => (
            200,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
    });
    let (scan, calls) = scan_calls(answer, &writing()).await;
    scan.expect("scan");
    let writes: Vec<(&str, &str)> = calls
        .iter()
        .filter(|c| c.uri.contains("policyreports"))
        .map(|c| (c.method.as_str(), c.uri.as_str()))
        .collect();
    assert_eq!(
        writes,
        [
            (
                "GET",
                "/apis/wgpolicyk8s.io/v1alpha2/policyreports?&labelSelector=app.kubernetes.io%2Fmanaged-by%3Dearthly-webhook&limit=2"
            ),
            (
                "PATCH",
                "/apis/wgpolicyk8s.io/v1alpha2/namespaces/ci-audit-capture/policyreports/earthly-webhook?&force=true&fieldManager=earthly-webhook"
            ),
            (
                "DELETE",
                "/apis/wgpolicyk8s.io/v1alpha2/namespaces/left-the-scope/policyreports/earthly-webhook?"
            ),
        ]
    );
    let patch = calls.iter().find(|c| c.method == "PATCH").expect("apply");
    assert_eq!(patch.content_type, "application/apply-patch+yaml");
    let applied: Value = serde_json::from_slice(&patch.body).expect("JSON");
    assert_eq!(applied["kind"], "PolicyReport");
    assert_eq!(applied["metadata"]["namespace"], NS);
    // The whole results list is applied (results that no longer hold are gone from it): the
    // Deployment's violation, mutation and TLS warning, the CronJob's mutation, the HPA's
    // violation and the Service's pass.
    let results: Vec<(&str, &str)> = applied["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["resources"][0]["kind"].as_str().unwrap_or(""),
                r["result"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("Deployment", "fail"),
            ("Deployment", "warn"),
            ("Deployment", "warn"),
            ("CronJob", "warn"),
            ("HorizontalPodAutoscaler", "fail"),
            ("Service", "pass")
        ]
    );
}

#[tokio::test]
async fn write_reports_without_the_crd_says_how_to_install_it() {
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the server could not find the requested resource", "reason": "NotFound",
        "details": {}, "code": 404});
    let answer = recorded_or(move |_: &Call| (404, not_found.clone()));
    let (scan, calls) = scan_calls(answer, &writing()).await;
    let error = scan.expect_err("no CRD").to_string();
    assert!(error.contains("PolicyReport CRD"), "{error}");
    assert!(error.contains("audit.installCRD=true"), "{error}");
    assert!(error.contains("kubectl apply -f"), "{error}");
    // Checked before anything is read.
    assert_eq!(calls.len(), 1, "{calls:#?}");
}

fn audit_command(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_earthly-webhook"))
        .arg("audit")
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("the binary runs")
}

#[test]
fn an_unreadable_kubeconfig_exits_2_naming_it() {
    let out = audit_command(&["--kubeconfig", "/nonexistent/kubeconfig"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: --kubeconfig /nonexistent/kubeconfig: "),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_apiserver_exits_2_naming_the_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Port 1 on localhost: nothing listens, the connection is refused at once.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:1'}\n\
         contexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {}\n",
    )
    .expect("write kubeconfig");
    let out = audit_command(&["--kubeconfig", kubeconfig.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: cannot list namespaces: "),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn namespace_and_all_namespaces_are_a_usage_error() {
    let out = audit_command(&["-n", "ci", "--all-namespaces"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

#[tokio::test]
async fn policyreport_output_is_a_yaml_stream_of_the_reports() {
    let (scan, _) = scan_with(Box::new(|c: &Call| recorded(&c.uri))).await;
    let scan = scan.expect("scan");
    let now = std::time::SystemTime::now();
    let text = output::policy_reports_yaml(&scan, now);
    assert!(text.starts_with("---\napiVersion: wgpolicyk8s.io/v1alpha2\nkind: PolicyReport\n"));
    let parsed: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .collect();
    assert_eq!(parsed, output::policy_reports(&scan, now));
}
