//! The Helm chart against the server it installs: every rendered config file is accepted by the
//! server's own parser, every webhook path the chart registers is one the server serves, and the
//! Service, probes and flags point at the ports the server listens on.
//!
//! The chart is rendered with `helm template` for each `charts/earthly-webhook/ci/*-values.yaml`
//! (helm from `$HELM`, else `.tools/bin/helm` as installed by `scripts/install-tools.sh`). Without
//! helm the renders that `scripts/check-chart.sh` left in `target/chart-renders/` are used; with
//! neither, the tests are skipped, except under `CI`, where that is a failure.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use clap::Parser as _;
use common::tools::find_helm;
use earthly_webhook::audit;
use earthly_webhook::cli::{Cli, Command as CliCommand, ServeArgs};
use earthly_webhook::config::Config;
use earthly_webhook::server::WEBHOOK_PATHS;
use serde::Deserialize as _;
use serde_json::Value;

/// Kubernetes versions the chart is rendered for: its minimum and a current one (matchConditions
/// and other newer fields only appear on the latter).
const KUBE_VERSIONS: &[&str] = &["1.25.0", "1.35.0"];
const NAMESPACE: &str = "earthly-system";

/// One rendered scenario: its name and its objects.
struct Render {
    name: String,
    objects: Vec<Value>,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo().join("charts/earthly-webhook")
}

fn parse_documents(text: &str, origin: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{origin}: not YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn render_with_helm(helm: &Path) -> Vec<Render> {
    let mut values: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("ci"))
        .expect("charts/earthly-webhook/ci exists")
        .map(|e| e.expect("readable ci/ entry").path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    values.sort();
    assert!(!values.is_empty(), "no ci/*-values.yaml scenarios");
    let mut renders = Vec::new();
    for version in KUBE_VERSIONS {
        for file in &values {
            let scenario = file
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix("-values.yaml"))
                .expect("scenario name");
            let name = format!("{scenario}.k8s-{version}");
            let out = Command::new(helm)
                .args(["template", "earthly-webhook"])
                .arg(chart_dir())
                .args(["--namespace", NAMESPACE, "--kube-version", version, "-f"])
                .arg(file)
                .output()
                .expect("helm runs");
            assert!(
                out.status.success(),
                "helm template failed for {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).expect("helm prints UTF-8");
            renders.push(Render {
                objects: parse_documents(&text, &name),
                name,
            });
        }
    }
    renders
}

fn read_prerendered() -> Vec<Render> {
    let dir = repo().join("target/chart-renders");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Render {
                objects: parse_documents(&text, &name),
                name,
            }
        })
        .collect()
}

/// The renders, made once for all tests; `None` when there is no way to render (tests skip).
fn renders() -> Option<&'static [Render]> {
    static RENDERS: OnceLock<Vec<Render>> = OnceLock::new();
    let renders = RENDERS.get_or_init(|| {
        if let Some(helm) = find_helm() {
            return render_with_helm(&helm);
        }
        let pre = read_prerendered();
        if pre.is_empty() && std::env::var_os("CI").is_some() {
            panic!(
                "helm not found (set HELM or run scripts/install-tools.sh) and no renders in \
                 target/chart-renders (scripts/check-chart.sh writes them): the chart cannot be \
                 checked against the server"
            );
        }
        pre
    });
    if renders.is_empty() {
        eprintln!(
            "skipped: no helm (HELM or .tools/bin/helm; see scripts/install-tools.sh) and no \
             renders in target/chart-renders"
        );
        return None;
    }
    Some(renders)
}

fn objects_of<'a>(render: &'a Render, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    render.objects.iter().filter(move |o| o["kind"] == kind)
}

/// The webhook's own object of this kind. The monitoring objects (a second Service and
/// ConfigMap, component `metrics`) are tested in tests/monitoring.rs.
fn the<'a>(render: &'a Render, kind: &'a str) -> &'a Value {
    let found: Vec<&Value> = objects_of(render, kind)
        .filter(|o| o["metadata"]["labels"]["app.kubernetes.io/component"] != "metrics")
        .collect();
    assert_eq!(found.len(), 1, "{}: expected one {kind}", render.name);
    found[0]
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

/// The webhook container of the render's Deployment.
fn container(render: &Render) -> &Value {
    let deployment = the(render, "Deployment");
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "{}: one container", render.name);
    &containers[0]
}

/// The number of the container port with this name.
fn container_port(render: &Render, name: &str) -> u16 {
    let ports = container(render)["ports"].as_array().expect("ports");
    let port = ports
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{}: no container port named {name}", render.name));
    port["containerPort"]
        .as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .expect("containerPort is a port number")
}

/// A port reference (number or container port name) resolved to a number.
fn resolve_port(render: &Render, port: &Value) -> u16 {
    match port {
        Value::String(name) => container_port(render, name),
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .expect("a port number"),
        other => panic!("{}: not a port: {other}", render.name),
    }
}

/// `earthly-webhook serve` parsed from these arguments by the server's own CLI.
fn parse_serve(args: &[&str]) -> ServeArgs {
    let cli = Cli::try_parse_from(std::iter::once("earthly-webhook").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("the server's CLI refuses {args:?}: {e}"));
    #[allow(irrefutable_let_patterns)]
    let CliCommand::Serve(serve) = cli.command else {
        panic!("{args:?} is not the serve command");
    };
    serve
}

/// The Deployment's container arguments, parsed by the server's CLI.
fn deployment_serve_args(render: &Render) -> ServeArgs {
    let args: Vec<&str> = container(render)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| str_of(a, "an argument"))
        .collect();
    parse_serve(&args)
}

#[test]
fn rendered_config_file_is_accepted_by_the_server() {
    let Some(renders) = renders() else { return };
    for render in renders {
        let configmap = the(render, "ConfigMap");
        let text = str_of(&configmap["data"]["config.yaml"], "data.config.yaml");
        let origin = format!("{} ConfigMap config.yaml", render.name);
        if let Err(e) = Config::from_yaml(text, &origin) {
            panic!("the server refuses the chart's config: {e}\n---\n{text}");
        }
    }
}

#[test]
fn rendered_config_file_carries_the_chart_values() {
    let Some(renders) = renders() else { return };
    // The custom scenario sets values in every section; they must reach the server unchanged.
    let Some(render) = renders
        .iter()
        .find(|r| r.name.starts_with("custom-config."))
    else {
        panic!("no custom-config render");
    };
    let text = str_of(
        &the(render, "ConfigMap")["data"]["config.yaml"],
        "config.yaml",
    );
    let config = Config::from_yaml(text, &render.name).expect("valid config");
    assert_eq!(config.mutation.cni_mtu, Some(1450));
    assert_eq!(config.mutation.scratch_volume.name, "earthly-scratch");
    let source = serde_json::to_value(&config.mutation.scratch_volume.source).expect("JSON");
    assert!(
        source["ephemeral"]["volumeClaimTemplate"].is_object(),
        "{source}"
    );
    assert_eq!(config.mutation.tolerations.len(), 1);
    assert!(config.mutation.node_affinity.is_some());
    assert_eq!(config.cluster.lookup_timeout_ms, 3000);
}

#[test]
fn every_registered_webhook_path_is_served() {
    let Some(renders) = renders() else { return };
    let served: BTreeSet<&str> = WEBHOOK_PATHS.iter().copied().collect();
    for render in renders {
        let mut registered = BTreeSet::new();
        for kind in [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            for config in objects_of(render, kind) {
                for webhook in config["webhooks"].as_array().expect("webhooks") {
                    let path = str_of(&webhook["clientConfig"]["service"]["path"], "path");
                    assert!(
                        served.contains(path),
                        "{}: {kind} {} calls {path}, which the server does not serve \
                         (server::WEBHOOK_PATHS: {WEBHOOK_PATHS:?})",
                        render.name,
                        webhook["name"]
                    );
                    registered.insert(path);
                }
            }
        }
        assert!(
            !registered.is_empty(),
            "{}: no webhook registered",
            render.name
        );
        // With both configurations on (the default), every path the server serves is used:
        // a mode without a registration would be unreachable.
        if render.name.starts_with("default.") {
            assert_eq!(registered, served, "{}: registered vs served", render.name);
        }
    }
}

#[test]
fn service_targets_the_servers_https_listener() {
    let Some(renders) = renders() else { return };
    let default_listen = parse_serve(&["serve"]).listen;
    assert_eq!(
        default_listen.port(),
        8443,
        "the server's default --listen port"
    );
    for render in renders {
        let service = the(render, "Service");
        let ports = service["spec"]["ports"].as_array().expect("ports");
        assert_eq!(ports.len(), 1, "{}: one Service port", render.name);
        let target = resolve_port(render, &ports[0]["targetPort"]);
        assert_eq!(
            target,
            default_listen.port(),
            "{}: the Service targets container port {target}, the server listens on {default_listen}",
            render.name
        );
        assert_eq!(container_port(render, "https"), target, "{}", render.name);
        assert_eq!(
            deployment_serve_args(render).listen.port(),
            target,
            "{}: --listen and the Service disagree",
            render.name
        );
        // The webhooks call the Service's port.
        for kind in [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            for config in objects_of(render, kind) {
                for webhook in config["webhooks"].as_array().expect("webhooks") {
                    let svc = &webhook["clientConfig"]["service"];
                    assert_eq!(svc["port"], ports[0]["port"], "{}", render.name);
                    assert_eq!(svc["name"], service["metadata"]["name"], "{}", render.name);
                    assert_eq!(svc["namespace"], NAMESPACE, "{}", render.name);
                }
            }
        }
    }
}

#[test]
fn probes_hit_the_admin_health_endpoints() {
    let Some(renders) = renders() else { return };
    let default_admin = parse_serve(&["serve"]).admin_listen;
    assert_eq!(
        default_admin.port(),
        8080,
        "the server's default --admin-listen port"
    );
    for render in renders {
        let c = container(render);
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let get = &c[probe]["httpGet"];
            assert_eq!(get["path"], path, "{}: {probe} path", render.name);
            assert!(
                get["scheme"].is_null() || get["scheme"] == "HTTP",
                "{}: the admin listener is plain HTTP",
                render.name
            );
            let port = resolve_port(render, &get["port"]);
            assert_eq!(
                port,
                default_admin.port(),
                "{}: {probe} hits port {port}, the admin listener is {default_admin}",
                render.name
            );
            assert_eq!(
                deployment_serve_args(render).admin_listen.port(),
                port,
                "{}: --admin-listen and the {probe} disagree",
                render.name
            );
        }
    }
}

#[test]
fn deployment_flags_point_at_the_mounted_files() {
    let Some(renders) = renders() else { return };
    for render in renders {
        let serve = deployment_serve_args(render);
        let mounts = container(render)["volumeMounts"]
            .as_array()
            .expect("volumeMounts");
        let mount_of = |volume: &str| -> PathBuf {
            let m = mounts
                .iter()
                .find(|m| m["name"] == volume)
                .unwrap_or_else(|| panic!("{}: no {volume} mount", render.name));
            PathBuf::from(str_of(&m["mountPath"], "mountPath"))
        };
        assert_eq!(
            serve.config.as_deref(),
            Some(mount_of("config").join("config.yaml").as_path()),
            "{}: --config is not the mounted ConfigMap's file",
            render.name
        );
        let tls = mount_of("tls");
        assert_eq!(
            serve.tls_cert.as_deref(),
            Some(tls.join("tls.crt").as_path())
        );
        assert_eq!(
            serve.tls_key.as_deref(),
            Some(tls.join("tls.key").as_path())
        );
    }
}

/// One (endpoint, group, resource, subresource, operation) the webhook judges or is sent.
type Judged = (String, String, String, String, String);

/// What the registry judges, as the chart must register it.
fn judged_by_the_registry() -> BTreeSet<Judged> {
    let mut out = BTreeSet::new();
    for r in earthly_webhook::rules::registry::REGISTRY {
        for resource in r.resources {
            for op in r.operations {
                let op = serde_json::to_value(op).expect("operation");
                out.insert((
                    r.action.as_str().to_owned(),
                    r.group.to_owned(),
                    (*resource).to_owned(),
                    r.sub_resource.unwrap_or("").to_owned(),
                    op.as_str().expect("operation name").to_owned(),
                ));
            }
        }
    }
    out
}

/// What one rendered webhook configuration sends to the server.
fn registered_by(render: &Render, kind: &str, action: &str) -> BTreeSet<Judged> {
    let mut out = BTreeSet::new();
    for config in objects_of(render, kind) {
        for webhook in config["webhooks"].as_array().expect("webhooks") {
            for rule in webhook["rules"].as_array().expect("rules") {
                let list = |f: &str| -> Vec<&str> {
                    rule[f]
                        .as_array()
                        .unwrap_or_else(|| panic!("{}: rule without {f}", render.name))
                        .iter()
                        .map(|v| str_of(v, f))
                        .collect()
                };
                for group in list("apiGroups") {
                    for resource in list("resources") {
                        let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
                        for op in list("operations") {
                            out.insert((
                                action.to_owned(),
                                group.to_owned(),
                                resource.to_owned(),
                                sub.to_owned(),
                                op.to_owned(),
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

/// The contract between chart and server: everything the registry judges is registered by the
/// chart's webhook configurations, and nothing registered goes unjudged.
#[test]
fn chart_registers_exactly_what_the_registry_judges() {
    let Some(renders) = renders() else { return };
    let expected = judged_by_the_registry();
    let default = renders
        .iter()
        .find(|r| r.name.starts_with("default."))
        .expect("the default scenario");
    let mut registered = registered_by(default, "MutatingWebhookConfiguration", "mutate");
    registered.extend(registered_by(
        default,
        "ValidatingWebhookConfiguration",
        "validate",
    ));
    let missing: Vec<&Judged> = expected.difference(&registered).collect();
    let unjudged: Vec<&Judged> = registered.difference(&expected).collect();
    assert!(
        missing.is_empty() && unjudged.is_empty(),
        "judged by the server but not registered by the chart: {missing:?}; registered by the \
         chart but judged by nothing: {unjudged:?}"
    );
}

/// The scheduled audit (`audit.enabled`): only in the scenarios that enable it.
fn audit_renders() -> Vec<&'static Render> {
    let Some(renders) = renders() else {
        return Vec::new();
    };
    for render in renders.iter().filter(|r| !r.name.starts_with("audit.")) {
        assert_eq!(
            objects_of(render, "CronJob").count(),
            0,
            "{}: audit.enabled defaults to false",
            render.name
        );
    }
    let audit: Vec<&Render> = renders
        .iter()
        .filter(|r| r.name.starts_with("audit."))
        .collect();
    assert!(!audit.is_empty(), "no audit scenario rendered");
    audit
}

#[test]
fn audit_cluster_role_grants_exactly_the_scans_calls() {
    for render in audit_renders() {
        let role = objects_of(render, "ClusterRole")
            .find(|r| str_of(&r["metadata"]["name"], "name").ends_with("-audit"))
            .unwrap_or_else(|| panic!("{}: no audit ClusterRole", render.name));
        let mut granted = BTreeSet::new();
        for rule in role["rules"].as_array().expect("rules") {
            let list = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .unwrap_or_else(|| panic!("{k} of {rule}"))
                    .iter()
                    .map(|v| str_of(v, k).to_owned())
                    .collect()
            };
            assert!(rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none());
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        assert!(
                            granted.insert((group.clone(), resource.clone(), verb)),
                            "{}: duplicate grant",
                            render.name
                        );
                    }
                }
            }
        }
        // `list` on the namespaces and each kind the scan reads (from the scan's own table),
        // and the report verbs on policyreports: nothing else.
        let mut expected = BTreeSet::new();
        for r in std::iter::once(&audit::list::NAMESPACES).chain(audit::list::AUDITED) {
            expected.insert((r.group().to_owned(), r.plural.to_owned(), "list".to_owned()));
        }
        for verb in ["get", "list", "create", "patch", "delete"] {
            expected.insert((
                "wgpolicyk8s.io".to_owned(),
                "policyreports".to_owned(),
                verb.to_owned(),
            ));
        }
        assert_eq!(granted, expected, "{}", render.name);
        let binding = objects_of(render, "ClusterRoleBinding")
            .find(|b| b["roleRef"]["name"] == role["metadata"]["name"])
            .unwrap_or_else(|| panic!("{}: the audit ClusterRole is not bound", render.name));
        let cronjob = the(render, "CronJob");
        let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(binding["subjects"][0]["name"], pod["serviceAccountName"]);
        assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    }
}

#[test]
fn audit_cronjob_runs_the_scan_hardened_and_never_twice_at_once() {
    for render in audit_renders() {
        let cronjob = the(render, "CronJob");
        assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid");
        let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let deployment = container(render);
        assert_eq!(c["securityContext"], deployment["securityContext"]);
        assert_eq!(c["image"], deployment["image"]);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        let args: Vec<&str> = std::iter::once("earthly-webhook")
            .chain(
                c["args"]
                    .as_array()
                    .expect("args")
                    .iter()
                    .map(|a| str_of(a, "arg")),
            )
            .collect();
        let cli = Cli::try_parse_from(&args)
            .unwrap_or_else(|e| panic!("{}: the CLI refuses {args:?}: {e}", render.name));
        let CliCommand::Audit(audit) = cli.command else {
            panic!("{}: not the audit command: {args:?}", render.name);
        };
        assert!(audit.write_reports && audit.exit_zero);
        assert_eq!(audit.exclude_namespaces, [NAMESPACE, "monitoring"]);
        let config = audit.config.expect("--config");
        let mounted = c["volumeMounts"][0]["mountPath"].as_str().expect("mount");
        assert!(config.starts_with(mounted), "{}: {config:?}", render.name);
        let crd = the(render, "CustomResourceDefinition");
        assert_eq!(crd["metadata"]["name"], "policyreports.wgpolicyk8s.io");
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }
}

#[test]
fn cleanup_hook_objects_are_deleted_whether_the_hook_succeeds_or_fails() {
    let Some(renders) = renders() else { return };
    let mut hooks = 0;
    for render in renders {
        for object in &render.objects {
            let annotations = &object["metadata"]["annotations"];
            if annotations["helm.sh/hook"] != "pre-delete" {
                continue;
            }
            hooks += 1;
            let policy = annotations["helm.sh/hook-delete-policy"]
                .as_str()
                .unwrap_or_default();
            let policies: BTreeSet<&str> = policy.split(',').collect();
            // hook-failed: a failed uninstall must not leave the hook's ClusterRole behind.
            for wanted in ["before-hook-creation", "hook-succeeded", "hook-failed"] {
                assert!(
                    policies.contains(wanted),
                    "{}: {} {} has delete policy {policy:?}, without {wanted}",
                    render.name,
                    object["kind"],
                    object["metadata"]["name"]
                );
            }
        }
    }
    assert!(hooks > 0, "no pre-delete hook object in any scenario");
}

#[test]
fn termination_grace_period_leaves_room_for_the_shutdown_delay_and_grace() {
    let Some(renders) = renders() else { return };
    for render in renders {
        let serve = deployment_serve_args(render);
        let pod = &the(render, "Deployment")["spec"]["template"]["spec"];
        let period = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: no terminationGracePeriodSeconds", render.name));
        assert!(
            serve.shutdown_delay > std::time::Duration::ZERO,
            "{}: no shutdown delay: the listener would close before endpoints drop the pod",
            render.name
        );
        assert!(
            std::time::Duration::from_secs(period) > serve.shutdown_delay + serve.shutdown_grace,
            "{}: terminationGracePeriodSeconds {period} is not above --shutdown-delay {:?} + \
             --shutdown-grace {:?}",
            render.name,
            serve.shutdown_delay,
            serve.shutdown_grace
        );
    }
}

#[test]
fn rolling_updates_and_drains_keep_a_ready_replica() {
    let Some(renders) = renders() else { return };
    for render in renders {
        let deployment = the(render, "Deployment");
        let replicas = deployment["spec"]["replicas"].as_u64().expect("replicas");
        let strategy = &deployment["spec"]["strategy"];
        assert_eq!(strategy["type"], "RollingUpdate", "{}", render.name);
        // No pod goes before its replacement is ready.
        assert_eq!(
            strategy["rollingUpdate"]["maxUnavailable"], 0,
            "{}: a rolling update may take a ready replica away",
            render.name
        );
        if replicas < 2 {
            continue;
        }
        let pdb = the(render, "PodDisruptionBudget");
        let min = pdb["spec"]["minAvailable"].as_u64().expect("minAvailable");
        assert!(
            (1..replicas).contains(&min),
            "{}: minAvailable {min} with {replicas} replicas must keep one up and allow a drain",
            render.name
        );
    }
    let default = renders
        .iter()
        .find(|r| r.name.starts_with("default."))
        .expect("the default scenario");
    assert_eq!(the(default, "Deployment")["spec"]["replicas"], 2);
}
