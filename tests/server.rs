//! The transport over real TLS: health and readiness, HTTP/2, shutdown. What the webhook
//! answers is tested in-process (`tests/reviews.rs`).

mod common;

use common::{TestServer, fixture, patch_of};
use hyper::StatusCode;
use serde_json::Value;

const ALL_IN_ONE: &str = "pod-create-earthly-all-in-one-from-job.json";

#[tokio::test]
async fn health_and_readiness_are_served_on_the_admin_port() {
    let server = TestServer::start().await;
    let (status, body) = common::admin_get(&server.admin_url("/healthz")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    let (status, _) = common::admin_get(&server.admin_url("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn http2_clients_are_served_too() {
    let server = TestServer::start().await;
    let client = common::client_for(&server.ca_pem, true);
    let (status, body) =
        common::post_with(&client, &server.url("/mutate"), fixture(ALL_IN_ONE).into()).await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).expect("json");
    assert!(patch_of(&answer).is_some());
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    let server = TestServer::start().await;
    let addr = server.bound.webhook;
    server.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
