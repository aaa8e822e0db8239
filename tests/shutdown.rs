//! Shutdown through the binary: after SIGTERM `/readyz` fails at once while the webhook keeps
//! accepting new connections for `--shutdown-delay`, then the listener closes, in-flight
//! requests drain, and the process exits 0. The test follows the server's own state (the
//! readiness flip, and the logged moment the listener closes), never a sleep.

mod common;

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Long enough for many connections on a loaded CI machine, short enough for a test.
const DELAY: &str = "3s";

fn spawn_server(dir: &std::path::Path) -> (Child, Receiver<Value>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_earthly-webhook"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--dev-ca-out")
        .arg(dir.join("ca.pem"))
        .args(["--log-format", "json", "--shutdown-delay", DELAY])
        .args(["--shutdown-grace", "5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let parsed = serde_json::from_str(&line).expect("JSON log line");
            if tx.send(parsed).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// The next log line whose message starts with `start`, within `within`.
fn wait_for_log(logs: &Receiver<Value>, start: &str, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match logs.recv_timeout(left) {
            Ok(line)
                if line["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(start)) =>
            {
                return Some(line);
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        }
    }
}

fn addr(line: &Value, field: &str) -> SocketAddr {
    line[field]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no {field} address in {line}"))
}

/// One review on a new connection; `Err` says how it failed.
async fn review_on_new_connection(
    webhook: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> Result<u16, String> {
    let tcp = TcpStream::connect(webhook)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut stream = common::tls_handshake(tcp, tls)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let body = String::from_utf8(common::fixture("pod-create-unrelated-multicontainer.json"))
        .expect("utf-8");
    let request = format!(
        "POST /validate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    common::read_status(&mut stream)
        .await
        .ok_or_else(|| "closed before answering".to_owned())
}

/// `GET /readyz` on the plain-HTTP admin port: its status code.
async fn readyz(admin: SocketAddr) -> u16 {
    let mut tcp = TcpStream::connect(admin)
        .await
        .expect("admin port stays up");
    tcp.write_all(b"GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.expect("read");
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"))
}

fn log_time(line: &Value) -> SystemTime {
    line["timestamp"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("no timestamp in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_are_served_until_the_delay_is_over_then_the_server_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, logs) = spawn_server(dir.path());
    let serving = wait_for_log(&logs, "serving", Duration::from_secs(30)).expect("serving line");
    let (webhook, admin) = (addr(&serving, "webhook"), addr(&serving, "admin"));
    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).expect("CA");
    let tls = common::raw_tls_config(&ca, &[b"http/1.1"]);

    assert_eq!(readyz(admin).await, 200);
    let before = review_on_new_connection(webhook, tls.clone()).await;
    assert_eq!(before, Ok(200), "served before shutdown");

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    // Keep opening connections while waiting for readiness to flip: none may fail.
    while readyz(admin).await != 503 {
        let r = review_on_new_connection(webhook, tls.clone()).await;
        assert_eq!(r, Ok(200), "failed before readiness flipped");
    }

    // Not ready: keep connecting until one fails. A failure is only allowed once the server
    // has logged that the delay is over and it closes its listener, at a time before the
    // failed attempt ended; anything earlier was refused during the delay.
    let mut served_in_delay = 0;
    let failure = loop {
        match review_on_new_connection(webhook, tls.clone()).await {
            Ok(status) => {
                assert_eq!(status, 200);
                served_in_delay += 1;
            }
            Err(why) => break (why, SystemTime::now()),
        }
    };
    let closed = wait_for_log(&logs, "shutdown delay over", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{failure:?} but the listener never closed"));
    assert!(
        log_time(&closed) <= failure.1,
        "a new connection failed during the shutdown delay: {}",
        failure.0
    );
    assert!(
        served_in_delay >= 3,
        "only {served_in_delay} connections were served during the {DELAY} delay"
    );

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let exit = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("exits after the delay and the drain")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
}
