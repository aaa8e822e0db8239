//! Transport limits, readiness during shutdown, and metrics, over real TLS. Clients here
//! misbehave on purpose; every wait is on an event (an answer, a close), bounded by a generous
//! `GUARD` that only turns a hang into a failure.

mod common;

use std::time::{Duration, Instant};

use common::{Options, TestServer, closed_by_peer, fixture, metric, read_status};
use earthly_webhook::server::Limits;
use hyper::StatusCode;
use tokio::io::AsyncWriteExt as _;

const ALL_IN_ONE: &str = "pod-create-earthly-all-in-one-from-job.json";
const UNRELATED: &str = "pod-create-unrelated-multicontainer.json";
/// Upper bound on any wait; never reached when the server behaves.
const GUARD: Duration = Duration::from_secs(20);

async fn guarded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress within {GUARD:?}"))
}

async fn server_with(limits: Limits) -> TestServer {
    TestServer::start_with(Options {
        limits,
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn oversized_declared_body_is_refused_before_it_is_read() {
    let server = TestServer::start().await;
    let mut tls = server.raw_tls(&[b"http/1.1"]).await;
    // Claims 10 MiB, sends 5 bytes and waits: the answer must not need the rest.
    tls.write_all(
        b"POST /mutate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
          content-length: 10485760\r\n\r\n{\"a\":",
    )
    .await
    .expect("write");
    tls.flush().await.expect("flush");
    let status = guarded("413 answer", read_status(&mut tls)).await;
    assert_eq!(status, Some(413));
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"earthly_webhook_requests_total{endpoint="mutate",kind="",operation="",outcome="error",code="413"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn body_limit_is_configurable() {
    let server = server_with(Limits {
        max_body_bytes: 1024,
        ..Limits::default()
    })
    .await;
    // The fixture is 3.7 KiB.
    let (status, _) = server.post("/mutate", fixture(ALL_IN_ONE)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = server.post("/mutate", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "small bodies still get in");
    server.stop().await;
}

#[tokio::test]
async fn silent_http1_client_is_disconnected_after_the_header_read_timeout() {
    let timeout = Duration::from_millis(300);
    let server = server_with(Limits {
        header_read_timeout: timeout,
        ..Limits::default()
    })
    .await;
    let mut tls = server.raw_tls(&[b"http/1.1"]).await;
    let started = Instant::now();
    guarded("close of a silent connection", closed_by_peer(&mut tls)).await;
    assert!(
        started.elapsed() >= timeout - Duration::from_millis(50),
        "closed after {:?}, before the {timeout:?} timeout",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn silent_http2_client_is_disconnected_after_the_header_read_timeout() {
    let timeout = Duration::from_millis(300);
    let server = server_with(Limits {
        header_read_timeout: timeout,
        ..Limits::default()
    })
    .await;
    let mut tls = server.raw_tls(&[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let started = Instant::now();
    guarded("close of a silent connection", closed_by_peer(&mut tls)).await;
    assert!(started.elapsed() >= timeout - Duration::from_millis(50));
    server.stop().await;
}

#[tokio::test]
async fn client_that_never_finishes_the_handshake_is_disconnected() {
    let timeout = Duration::from_millis(300);
    let server = server_with(Limits {
        header_read_timeout: timeout,
        ..Limits::default()
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.bound.webhook)
        .await
        .expect("connect");
    let started = Instant::now();
    guarded("close of a connection without handshake", async {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 64];
        while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(started.elapsed() >= timeout - Duration::from_millis(50));
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"earthly_webhook_connections_total{result="handshake_timeout"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn request_whose_body_stalls_gets_503_after_the_request_timeout() {
    let timeout = Duration::from_millis(300);
    let server = server_with(Limits {
        request_timeout: timeout,
        ..Limits::default()
    })
    .await;
    let mut tls = server.raw_tls(&[b"http/1.1"]).await;
    // Headers promise 1000 bytes; 10 come, then nothing: the request can never finish.
    tls.write_all(
        b"POST /validate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
          content-length: 1000\r\n\r\n{\"apiVers",
    )
    .await
    .expect("write");
    tls.flush().await.expect("flush");
    let started = Instant::now();
    let status = guarded("timeout answer", read_status(&mut tls)).await;
    assert_eq!(status, Some(503));
    assert!(started.elapsed() >= timeout - Duration::from_millis(50));
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"earthly_webhook_requests_total{endpoint="validate",kind="",operation="",outcome="error",code="503"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn second_connection_waits_until_the_first_closes() {
    let server = server_with(Limits {
        max_connections: 1,
        ..Limits::default()
    })
    .await;
    let config = common::raw_tls_config(&server.ca_pem, &[b"http/1.1"]);
    let mut first = server.raw_tls(&[b"http/1.1"]).await;
    // The first connection is served (and so holds the only slot).
    first
        .write_all(b"POST /mutate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .expect("write");
    assert_eq!(
        guarded("first answer", read_status(&mut first)).await,
        Some(400)
    );

    // The second one gets into the listen backlog, but nobody accepts it: its handshake cannot
    // finish while the first connection is open. (Proving that something does not happen takes a
    // deadline; the positive half below waits on the event itself.)
    let tcp = tokio::net::TcpStream::connect(server.bound.webhook)
        .await
        .expect("connect");
    let mut handshake = tokio::spawn(common::tls_handshake(tcp, config));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut handshake)
            .await
            .is_err(),
        "second connection was served while the first held the only slot"
    );

    drop(first);
    let mut second = guarded("second handshake", handshake)
        .await
        .expect("task")
        .expect("handshake");
    second
        .write_all(b"POST /mutate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .expect("write");
    assert_eq!(
        guarded("second answer", read_status(&mut second)).await,
        Some(400)
    );
    server.stop().await;
}

#[tokio::test]
async fn readiness_turns_off_at_shutdown_while_a_request_drains() {
    let server = TestServer::start().await;
    let (status, _) = common::admin_get(&server.admin_url("/readyz")).await;
    assert_eq!(status, StatusCode::OK);

    // A request in flight: the server is reading its body (it said "100 Continue" when it
    // started to), and the body has not come yet.
    let body = fixture(UNRELATED);
    let mut tls = server.raw_tls(&[b"http/1.1"]).await;
    tls.write_all(
        format!(
            "POST /mutate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             expect: 100-continue\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    tls.flush().await.expect("flush");
    assert_eq!(
        guarded("100 Continue", read_status(&mut tls)).await,
        Some(100)
    );

    server.begin_shutdown();
    // Not ready at once, and the admin port still answers while the webhook drains.
    let (status, text) = common::admin_get(&server.admin_url("/readyz")).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    );

    // The request in flight still gets its answer.
    tls.write_all(&body).await.expect("write");
    tls.flush().await.expect("flush");
    assert_eq!(
        guarded("drained answer", read_status(&mut tls)).await,
        Some(200)
    );
    drop(tls);
    let admin = server.bound.admin;
    guarded("shutdown", server.stop()).await;
    assert!(tokio::net::TcpStream::connect(admin).await.is_err());
}

#[tokio::test]
async fn metrics_count_reviews_by_kind_operation_and_outcome() {
    let server = TestServer::start().await;
    server.review("/mutate", fixture(ALL_IN_ONE)).await;
    server.review("/mutate", fixture(UNRELATED)).await;
    server.review("/validate/warn", fixture(UNRELATED)).await;
    let (status, _) = server.post("/mutate", b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let text = server.metrics().await;
    let expect = |prefix: &str, value: f64| {
        assert_eq!(metric(&text, prefix), Some(value), "{prefix} in\n{text}");
    };
    expect(
        r#"earthly_webhook_requests_total{endpoint="mutate",kind="Pod",operation="CREATE",outcome="mutated",code="200"}"#,
        1.0,
    );
    expect(
        r#"earthly_webhook_requests_total{endpoint="mutate",kind="Pod",operation="CREATE",outcome="allowed",code="200"}"#,
        1.0,
    );
    expect(
        r#"earthly_webhook_requests_total{endpoint="validate",kind="Pod",operation="CREATE",outcome="allowed",code="200"}"#,
        1.0,
    );
    expect(
        r#"earthly_webhook_requests_total{endpoint="mutate",kind="",operation="",outcome="error",code="400"}"#,
        1.0,
    );
    // The all-in-one pod got a scratch volume: one volume and one mount.
    expect(
        r#"earthly_webhook_patch_operations_total{rule="scratch_volume"}"#,
        2.0,
    );
    expect(
        r#"earthly_webhook_request_duration_seconds_count{endpoint="mutate"}"#,
        3.0,
    );
    expect(r#"earthly_webhook_connections_total{result="served"}"#, 1.0);
    expect(
        &format!(
            r#"earthly_webhook_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        ),
        1.0,
    );
    // The test certificate is valid for a day.
    let expiry = metric(
        &text,
        "earthly_webhook_certificate_expiry_timestamp_seconds ",
    )
    .expect("expiry gauge");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(expiry > now && expiry < now + 2.0 * 86_400.0, "{expiry}");
    server.stop().await;
}
