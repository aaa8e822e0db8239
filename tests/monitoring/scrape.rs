//! A live `/metrics` scrape of the real binary, and the series in it.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;

use crate::common::{admin_get, client_for, fixture, post_with, write_certs};

/// One series: a sample's name and labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl Series {
    /// The series as Prometheus stores it when it scrapes it from a target with `target`
    /// labels: with `honor_labels: false` (the ServiceMonitor default), a scraped label that
    /// a target label also has is kept as `exported_<name>` (the webhook's `endpoint` label
    /// meets the Prometheus Operator's `endpoint`, the port name).
    pub fn scraped_by(&self, target: &BTreeMap<String, String>) -> Series {
        let mut labels = target.clone();
        for (k, v) in &self.labels {
            let key = if target.contains_key(k) {
                format!("exported_{k}")
            } else {
                k.clone()
            };
            labels.insert(key, v.clone());
        }
        Series {
            name: self.name.clone(),
            labels,
        }
    }

    /// Series notation of `promtool test rules`: `name{a="b", ...}`.
    pub fn notation(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={}", serde_json::Value::from(v.as_str())))
            .collect();
        format!("{}{{{}}}", self.name, labels.join(", "))
    }

    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }
}

/// Parses the text exposition the webhook serves. Only the sample lines matter here: metadata
/// lines (`# HELP`, `# TYPE`, `# UNIT`, `# EOF`) are skipped. The crate that parses this format
/// (prometheus-parse) folds histogram buckets into one value, losing the `_bucket` series the
/// rules query, so the few lines are read here.
pub fn parse(text: &str) -> Result<Vec<(Series, f64)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}: {line}", n + 1);
        let (head, value) = line.rsplit_once(' ').ok_or_else(|| bad("no value"))?;
        let value: f64 = value.parse().map_err(|_| bad("value is not a number"))?;
        let (name, labels) = match head.split_once('{') {
            None => (head, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .ok_or_else(|| bad("no closing brace"))?;
                (name, parse_labels(body).map_err(|e| bad(&e))?)
            }
        };
        let series = Series {
            name: name.to_owned(),
            labels,
        };
        out.push((series, value));
    }
    Ok(out)
}

/// `a="x",b="y \"quoted\""` into a map, undoing the format's escapes (`\\`, `\"`, `\n`).
fn parse_labels(body: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("no value for a label in {rest:?}"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("dangling escape".to_owned()),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated value of {key}")),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    Ok(labels)
}

/// Every series of a `/metrics` scrape of the real server, after requests that make each
/// family of the rules and the dashboard carry samples.
pub struct Scrape {
    pub series: Vec<Series>,
}

impl Scrape {
    /// The scraped series named `name` whose labels include `with`.
    pub fn all(&self, name: &str, with: &[(&str, &str)]) -> Vec<&Series> {
        self.series
            .iter()
            .filter(|s| s.name == name && with.iter().all(|(k, v)| s.label(k) == *v))
            .collect()
    }

    /// The one scraped series named `name` with labels `with`; a failure names what is missing,
    /// which is what a renamed metric or label looks like here.
    pub fn one(&self, name: &str, with: &[(&str, &str)]) -> &Series {
        let found = self.all(name, with);
        assert!(
            found.len() == 1,
            "the live /metrics scrape has {} series {name} with {with:?} (want exactly one): a \
             metric or label the alerts use was renamed, or the test's requests no longer \
             produce it. Scraped names: {:?}",
            found.len(),
            self.names()
        );
        found[0]
    }

    pub fn names(&self) -> std::collections::BTreeSet<&str> {
        self.series.iter().map(|s| s.name.as_str()).collect()
    }
}

/// Starts `earthly-webhook serve` (no Kubernetes API, so lookups fail as `unavailable`), sends
/// it reviews that are mutated, denied after a failed lookup, admitted with a warn-mode
/// violation, and an unreadable body, and scrapes its admin port.
pub fn live() -> Scrape {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_pem, files) = write_certs(dir.path(), "monitoring test CA");
    let mut child = Command::new(env!("CARGO_BIN_EXE_earthly-webhook"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "json"])
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        // No kubeconfig and not in a cluster: every lookup fails, which the alerts need to see.
        .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn earthly-webhook serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok);
        let serving = lines
            .by_ref()
            .find(|l| l.contains(r#""message":"serving""#));
        let _ = tx.send(serving);
        // Keep draining, so a full pipe never blocks the server's logging.
        lines.for_each(drop);
    });
    // The bound addresses are in the "serving" line; a server that dies closes stderr first.
    let serving = rx.recv_timeout(Duration::from_secs(20));
    let scraped = serving.ok().flatten().map(|line| {
        let line: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        let addr = |field: &str| -> SocketAddr {
            line[field]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {field} address in {line}"))
        };
        drive_and_scrape(&ca_pem, addr("webhook"), addr("admin"))
    });
    let _ = child.kill();
    let _ = child.wait();
    let text = scraped.expect("earthly-webhook serve logs \"serving\" within 20 s");
    let series = parse(&text)
        .unwrap_or_else(|e| panic!("unreadable /metrics: {e}\n{text}"))
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    Scrape { series }
}

fn drive_and_scrape(ca_pem: &str, webhook: SocketAddr, admin: SocketAddr) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = client_for(ca_pem, false);
        let url = |path: &str| format!("https://{webhook}{path}");
        for (path, body, want) in [
            (
                "/mutate",
                fixture("pod-create-earthly-all-in-one-from-job.json"),
                StatusCode::OK,
            ),
            (
                "/validate",
                fixture("scale-update-buildkitd-deployment-to-two.json"),
                StatusCode::OK,
            ),
            (
                "/validate/warn",
                fixture("statefulset-create-buildkitd-two-replicas.json"),
                StatusCode::OK,
            ),
            (
                "/validate",
                b"not a review".to_vec(),
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let (status, answer) = post_with(&client, &url(path), Bytes::from(body)).await;
            assert_eq!(status, want, "{path}: {}", String::from_utf8_lossy(&answer));
        }
        let (status, text) = admin_get(&format!("http://{admin}/metrics")).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        text
    })
}

#[test]
fn parses_names_labels_and_escapes() {
    let text = "# TYPE x counter\nx_total{a=\"1\",b=\"say \\\"hi\\\"\"} 3\ny 0.5\n# EOF\n";
    let parsed = parse(text).expect("parses");
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[0].0.name, "x_total");
    assert_eq!(parsed[0].0.label("b"), "say \"hi\"");
    assert_eq!(parsed[0].1, 3.0);
    assert_eq!(parsed[1].0.labels.len(), 0);
    assert!(parse("x{a=\"1\" 3").is_err());
}
