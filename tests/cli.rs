//! The binary's command line: `certs`, start-up errors, `--help`.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_earthly-webhook"))
}

/// `serve` on free ports with a throwaway development certificate, its CA written into `dir`.
fn dev_serve(dir: &std::path::Path) -> Command {
    let mut cmd = bin();
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .arg("--dev-ca-out")
    .arg(dir.join("ca.pem"));
    cmd
}

#[test]
fn certs_writes_a_serving_pair_for_the_service_and_prints_the_ca_bundle() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bin()
        .args([
            "certs",
            "--service",
            "hook",
            "--namespace",
            "ci-system",
            "--days",
            "30",
        ])
        .arg("--out-dir")
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ca = std::fs::read_to_string(dir.path().join("ca.crt")).expect("ca.crt");
    let bundle = String::from_utf8(out.stdout).expect("utf8");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .expect("caBundle is base64");
    assert_eq!(decoded, ca.as_bytes(), "printed caBundle is ca.crt");

    let cert_pem = std::fs::read(dir.path().join("tls.crt")).expect("tls.crt");
    let key_pem = std::fs::read(dir.path().join("tls.key")).expect("tls.key");
    // The pair loads exactly as the server loads it.
    earthly_webhook::server::tls::certified_key(&cert_pem, &key_pem, "tls.crt", "tls.key")
        .expect("usable pair");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&cert_pem).expect("pem");
    let cert = pem.parse_x509().expect("x509");
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .expect("extension")
        .expect("SANs")
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(
        sans.contains(&"DNSName(hook.ci-system.svc)".to_owned()),
        "{sans:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("tls.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
    }
}

#[test]
fn serve_refuses_a_bad_config_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "mutation:\n  cniMtu: 70000\n").expect("write");
    let out = bin()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("field `mutation.cniMtu`"), "{stderr}");
}

#[test]
fn serve_needs_both_certificate_flags() {
    let out = bin()
        .args(["serve", "--tls-cert", "/nonexistent.crt"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls-key"), "{stderr}");
}

#[test]
fn help_documents_every_serve_flag() {
    let out = bin().args(["serve", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--tls-cert",
        "--tls-key",
        "--config",
        "--admin-listen",
        "--log-format",
        "--log-level",
        "--worker-threads",
        "--shutdown-delay",
        "--shutdown-grace",
        "EARTHLY_WEBHOOK_LISTEN",
        "EARTHLY_WEBHOOK_SHUTDOWN_DELAY",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn serve_exits_cleanly_on_sigterm() {
    use std::io::BufRead as _;
    use std::process::Stdio;
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = dev_serve(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // The CA path is printed once the certificate exists; the listeners bind right after.
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert!(line.starts_with("development CA written to"), "{line:?}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let exit = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("exits within the shutdown deadline")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn serve_runs_the_worker_threads_it_is_given() {
    use std::io::BufRead as _;
    use std::process::Stdio;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = dev_serve(dir.path())
        .args(["--log-format", "json", "--worker-threads", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Log lines are written by a background thread; the "serving" line arrives soon. If the
    // server dies first, stderr closes and the search ends; if it hangs, the timeout does.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let found = std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains(r#""message":"serving""#));
        let _ = tx.send(found);
    });
    let serving = rx.recv_timeout(std::time::Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    let serving = serving
        .expect("the server logs within 20 s")
        .expect("a serving line");
    let line: serde_json::Value = serde_json::from_str(&serving).expect("JSON log line");
    assert_eq!(line["worker_threads"], 3, "{serving}");
}

/// Runs `serve` with a missing config file, which logs an ERROR line in text format and exits;
/// under `script` stderr is a terminal. Returns everything it wrote.
fn failing_serve_output(on_terminal: bool, no_color: Option<&str>) -> String {
    let path = env!("CARGO_BIN_EXE_earthly-webhook");
    let args = "serve --config /nonexistent/config.yaml --log-format text";
    let mut cmd = if on_terminal {
        // util-linux `script` runs the command on a new pseudo-terminal and copies its output.
        let mut c = Command::new("script");
        c.args(["-qec", &format!("{path} {args}"), "/dev/null"]);
        c
    } else {
        let mut c = bin();
        c.args(args.split(' '));
        c
    };
    cmd.env_remove("NO_COLOR");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd.output().expect("run");
    assert!(!out.status.success(), "a missing config must fail");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn text_logs_are_coloured_only_on_a_terminal_without_no_color() {
    let piped = failing_serve_output(false, None);
    assert!(piped.contains("ERROR"), "{piped}");
    assert!(
        !piped.contains('\u{1b}'),
        "escape codes in a pipe: {piped:?}"
    );
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped the terminal cases: no `script` (util-linux)");
        return;
    }
    let terminal = failing_serve_output(true, None);
    assert!(
        terminal.contains("\u{1b}["),
        "no colour on a terminal: {terminal:?}"
    );
    let no_color = failing_serve_output(true, Some("1"));
    assert!(no_color.contains("ERROR"), "{no_color}");
    assert!(
        !no_color.contains('\u{1b}'),
        "colour despite NO_COLOR: {no_color:?}"
    );
}
