//! `promtool test rules` cases for every alert: each fires where it should and stays quiet
//! where it should not, on series whose names and labels are those of the live scrape.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::scrape::{Scrape, Series};

/// What the cases need to know about the rendered chart.
pub struct Setup<'a> {
    pub scrape: &'a Scrape,
    /// Labels the Prometheus Operator gives a target of the ServiceMonitor, for one pod.
    pub target: BTreeMap<String, String>,
    /// Labels every alert carries besides its own: `alertLabels` of the scenario.
    pub alert_labels: BTreeMap<String, String>,
    /// The p99 threshold: `timeoutRatio` × `webhooks.timeoutSeconds`.
    pub latency_threshold: f64,
    /// Where the server cuts requests off (`--request-timeout` of the Deployment).
    pub request_timeout: f64,
    /// The rendered annotations of each alert (Prometheus templates).
    pub annotations: BTreeMap<String, BTreeMap<String, String>>,
}

/// An alert expected to fire: its labels, and how its annotations show `$value`.
struct Fired {
    labels: BTreeMap<String, String>,
    shown: &'static str,
}

/// One `tests:` entry of a promtool unit test file.
struct Case {
    name: &'static str,
    series: Vec<(Series, String)>,
    eval_time: &'static str,
    /// Alert name and the alerts it fires (empty: it must stay quiet).
    alerts: Vec<(&'static str, Vec<Fired>)>,
}

pub const ALERTS: &[&str] = &[
    "EarthlyWebhookCertificateExpiring",
    "EarthlyWebhookCertificateExpiryImminent",
    "EarthlyWebhookNoReadyReplica",
    "EarthlyWebhookErrors",
    "EarthlyWebhookSlowResponses",
    "EarthlyWebhookLookupFailures",
    "EarthlyWebhookCertificateReloadFailed",
];

const DAY: u64 = 86_400;

impl Setup<'_> {
    /// The scraped series `name` with labels `with`, as Prometheus stores it for this target.
    fn series(&self, name: &str, with: &[(&str, &str)]) -> Series {
        self.scrape.one(name, with).scraped_by(&self.target)
    }

    fn on_pod(&self, pod: &str, s: Series) -> Series {
        let mut s = s;
        s.labels.insert("pod".to_owned(), pod.to_owned());
        s
    }

    /// A firing alert: its severity, the scenario's extra labels, and the labels its
    /// expression keeps (`keep` of the target's); `shown` is `$value` as its annotations
    /// print it.
    fn fired(&self, severity: &str, keep: &[&str], shown: &'static str) -> Vec<Fired> {
        let mut labels = self.alert_labels.clone();
        labels.insert("severity".to_owned(), severity.to_owned());
        for k in keep {
            labels.insert((*k).to_owned(), self.target[*k].clone());
        }
        vec![Fired { labels, shown }]
    }

    /// The annotations of `alert` as Prometheus expands them for `fired`: `$labels.x` and the
    /// `$value` pipelines the chart uses. Anything else left over is a template this test does
    /// not know, or a label the alert does not carry.
    fn expanded(&self, alert: &str, fired: &Fired) -> BTreeMap<String, String> {
        let mut labels = fired.labels.clone();
        labels.insert("alertname".to_owned(), alert.to_owned());
        self.annotations[alert]
            .iter()
            .map(|(key, template)| {
                let mut text = template.clone();
                for (k, v) in &labels {
                    text = text.replace(&format!("{{{{ $labels.{k} }}}}"), v);
                }
                for f in ["humanizeDuration", "humanizePercentage"] {
                    text = text.replace(&format!("{{{{ $value | {f} }}}}"), fired.shown);
                }
                assert!(
                    !text.contains("{{"),
                    "{alert} {key}: unexpanded template in {text}"
                );
                (key.clone(), text)
            })
            .collect()
    }

    fn build_info(&self) -> (Series, String) {
        (
            self.series("earthly_webhook_build_info", &[]),
            "1x30".into(),
        )
    }

    fn expiry_in(&self, seconds: u64) -> (Series, String) {
        (
            self.series("earthly_webhook_certificate_expiry_timestamp_seconds", &[]),
            format!("{seconds}x30"),
        )
    }

    fn requests(&self, outcome: &str, per_minute: u32) -> (Series, String) {
        (
            self.series("earthly_webhook_requests_total", &[("outcome", outcome)]),
            format!("0+{per_minute}x30"),
        )
    }

    /// Every bucket of the `mutate` latency histogram, with 60 requests a minute that each
    /// take `seconds`: the buckets whose bound is at least that count them.
    fn latency(&self, seconds: f64) -> Vec<(Series, String)> {
        let buckets = self.scrape.all(
            "earthly_webhook_request_duration_seconds_bucket",
            &[("endpoint", "mutate")],
        );
        assert!(buckets.len() > 2, "no latency buckets scraped");
        buckets
            .into_iter()
            .map(|b| {
                let le: f64 = b.label("le").parse().expect("le is a number or +Inf");
                let values = if le >= seconds { "0+60x30" } else { "0x30" };
                (b.scraped_by(&self.target), values.to_owned())
            })
            .collect()
    }

    /// The upper bound of the highest finite bucket at or below `seconds`.
    fn bucket_at_or_below(&self, seconds: f64) -> f64 {
        self.scrape
            .all(
                "earthly_webhook_request_duration_seconds_bucket",
                &[("endpoint", "mutate")],
            )
            .iter()
            .filter_map(|b| b.label("le").parse::<f64>().ok())
            .filter(|le| *le <= seconds)
            .fold(0.0, f64::max)
    }

    fn lookups(&self, per_minute: u32, failed_per_minute: u32) -> Vec<(Series, String)> {
        vec![
            (
                self.series(
                    "earthly_webhook_cluster_lookups_total",
                    &[("method", "workload")],
                ),
                format!("0+{per_minute}x30"),
            ),
            (
                self.series(
                    "earthly_webhook_cluster_lookup_failures_total",
                    &[("method", "workload"), ("reason", "unavailable")],
                ),
                format!("0+{failed_per_minute}x30"),
            ),
        ]
    }

    fn reloads(&self, failure: &str, success: &str) -> Vec<(Series, String)> {
        ["failure", "success"]
            .into_iter()
            .zip([failure, success])
            .map(|(result, values)| {
                (
                    self.series(
                        "earthly_webhook_certificate_reloads_total",
                        &[("result", result)],
                    ),
                    values.to_owned(),
                )
            })
            .collect()
    }

    fn cases(&self) -> Vec<Case> {
        let quiet = |alert| (alert, vec![]);
        let mut healthy = vec![self.build_info(), self.expiry_in(90 * DAY)];
        healthy.extend([self.requests("mutated", 60), self.requests("error", 0)]);
        healthy.extend(self.latency(0.0001));
        healthy.extend(self.lookups(10, 0));
        healthy.extend(self.reloads("0x30", "0x30"));
        let pod_a = self.on_pod(
            "earthly-webhook-a",
            self.series("earthly_webhook_build_info", &[]),
        );
        let pod_b = self.on_pod(
            "earthly-webhook-b",
            self.series("earthly_webhook_build_info", &[]),
        );
        let with_info = |mut s: Vec<(Series, String)>| {
            s.push(self.build_info());
            s
        };
        vec![
            Case {
                name: "a healthy webhook raises nothing",
                series: healthy,
                eval_time: "20m",
                alerts: ALERTS.iter().map(|a| quiet(*a)).collect(),
            },
            Case {
                name: "a certificate expiring in 10 days warns",
                series: with_info(vec![self.expiry_in(10 * DAY)]),
                eval_time: "10m",
                alerts: vec![
                    (
                        ALERTS[0],
                        self.fired("warning", &["namespace", "job"], "9d 23h 50m 0s"),
                    ),
                    quiet(ALERTS[1]),
                ],
            },
            Case {
                name: "a certificate expiring in 2 days is critical, and only that",
                series: with_info(vec![self.expiry_in(2 * DAY)]),
                eval_time: "10m",
                alerts: vec![
                    quiet(ALERTS[0]),
                    (
                        ALERTS[1],
                        self.fired("critical", &["namespace", "job"], "1d 23h 50m 0s"),
                    ),
                ],
            },
            Case {
                name: "no pod scraped for 5 minutes (failurePolicy Fail: critical)",
                series: vec![(pod_a.clone(), "1x4".into())],
                eval_time: "16m",
                alerts: vec![(ALERTS[2], self.fired("critical", &["namespace", "job"], ""))],
            },
            Case {
                name: "one pod gone while another serves is no outage",
                series: vec![(pod_a, "1x4".into()), (pod_b, "1x30".into())],
                eval_time: "16m",
                alerts: vec![quiet(ALERTS[2])],
            },
            Case {
                name: "9% errors for 10 minutes fire",
                series: with_info(vec![
                    self.requests("mutated", 60),
                    self.requests("error", 6),
                ]),
                eval_time: "15m",
                alerts: vec![(
                    ALERTS[3],
                    self.fired("critical", &["namespace", "job"], "9.091%"),
                )],
            },
            Case {
                name: "3% errors stay under the 5% threshold",
                series: with_info(vec![
                    self.requests("mutated", 60),
                    self.requests("error", 2),
                ]),
                eval_time: "15m",
                alerts: vec![quiet(ALERTS[3])],
            },
            Case {
                name: "requests as slow as the server's request timeout fire",
                series: with_info(self.latency(self.request_timeout)),
                eval_time: "15m",
                alerts: vec![(
                    ALERTS[4],
                    self.fired("warning", &["namespace", "job"], "13.04s"),
                )],
            },
            Case {
                name: "slow requests under the threshold stay quiet",
                series: with_info(
                    self.latency(self.bucket_at_or_below(self.latency_threshold) * 0.99),
                ),
                eval_time: "15m",
                alerts: vec![quiet(ALERTS[4])],
            },
            Case {
                name: "20% failed lookups fire",
                series: with_info(self.lookups(10, 2)),
                eval_time: "15m",
                alerts: vec![(
                    ALERTS[5],
                    self.fired("warning", &["namespace", "job"], "20%"),
                )],
            },
            Case {
                name: "2% failed lookups stay quiet",
                series: with_info(self.lookups(100, 2)),
                eval_time: "15m",
                alerts: vec![quiet(ALERTS[5])],
            },
            Case {
                name: "a failed reload with no good one after it fires",
                series: with_info(self.reloads("0 0 0 1x27", "0x30")),
                eval_time: "10m",
                alerts: vec![(
                    ALERTS[6],
                    self.fired("warning", &["namespace", "job", "pod"], ""),
                )],
            },
            Case {
                name: "a half-written pair followed by a good reload stays quiet",
                series: with_info(self.reloads("0 0 0 1x27", "0 0 0 0 1x26")),
                eval_time: "10m",
                alerts: vec![quiet(ALERTS[6])],
            },
        ]
    }

    /// The `tests:` of a promtool unit test file.
    pub fn promtool_tests(&self) -> Vec<Value> {
        self.cases()
            .into_iter()
            .map(|case| {
                let alerts: Vec<Value> = case
                    .alerts
                    .iter()
                    .map(|(alert, fired)| {
                        json!({
                            "eval_time": case.eval_time,
                            "alertname": alert,
                            "exp_alerts": fired.iter().map(|f| json!({
                                "exp_labels": f.labels,
                                "exp_annotations": self.expanded(alert, f),
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({
                    "name": case.name,
                    "interval": "1m",
                    "input_series": case.series.iter().map(|(s, values)| json!({
                        "series": s.notation(),
                        "values": values,
                    })).collect::<Vec<_>>(),
                    "alert_rule_test": alerts,
                })
            })
            .collect()
    }
}
