//! Test harness: a real server on 127.0.0.1 port 0 with a freshly generated CA, a client that
//! trusts only that CA and speaks HTTP/1.1 keep-alive like the kube-apiserver, and helpers to
//! read fixtures and apply returned patches.
#![allow(dead_code)] // each test binary uses a different part of the harness

mod app;
pub mod tools;

#[allow(unused_imports)] // each test binary uses a different part of the harness
pub use app::App;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use earthly_webhook::certs;
use earthly_webhook::cluster::{ClusterView, NoCluster};
use earthly_webhook::config::Config;
use earthly_webhook::review::Policy;
use earthly_webhook::server::{self, Bound, Limits, ServeOptions, TlsSource, tls::CertFiles};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The fixtures directory.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// A captured AdmissionReview body from `tests/data/admission-reviews/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = data_dir().join("admission-reviews").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every fixture file name, sorted.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir().join("admission-reviews"))
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// A client that trusts only `ca_pem` and keeps connections alive.
pub fn client_for(ca_pem: &str, http2: bool) -> HttpsClient {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA cert");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1();
    let connector = if http2 {
        connector.enable_http2().build()
    } else {
        connector.build()
    };
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(http2);
    builder.build(connector)
}

/// A running server and a client for it.
pub struct TestServer {
    pub bound: Bound,
    pub ca_pem: String,
    pub files: CertFiles,
    pub client: HttpsClient,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// How to start a test server.
pub struct Options {
    pub config: Config,
    pub cluster: Arc<dyn ClusterView>,
    pub limits: Limits,
    pub reload_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            config: Config::default(),
            cluster: Arc::new(NoCluster),
            limits: Limits::default(),
            reload_interval: Duration::from_secs(3600),
        }
    }
}

/// Writes a fresh CA + serving certificate for 127.0.0.1/localhost into `dir`.
pub fn write_certs(dir: &Path, ca_name: &str) -> (String, CertFiles) {
    let g = certs::generate(
        ca_name,
        &["127.0.0.1".to_owned(), "localhost".to_owned()],
        1,
    )
    .expect("generate certs");
    let files = CertFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    std::fs::write(&files.cert, &g.cert_pem).expect("write cert");
    std::fs::write(&files.key, &g.key_pem).expect("write key");
    (g.ca_pem, files)
}

impl TestServer {
    /// Starts a server with the default config and no cluster.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_pem, files) = write_certs(dir.path(), "test CA");
        let shutdown = CancellationToken::new();
        let serve = ServeOptions {
            listen: "127.0.0.1:0".parse().expect("addr"),
            admin_listen: "127.0.0.1:0".parse().expect("addr"),
            tls: TlsSource::Files {
                files: files.clone(),
                reload_interval: opts.reload_interval,
            },
            policy: Policy::new(opts.config).expect("policy"),
            cluster: opts.cluster,
            limits: opts.limits,
            shutdown_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(5),
        };
        let (bound, handle) = server::start(serve, shutdown.clone())
            .await
            .expect("server starts");
        let client = client_for(&ca_pem, false);
        Self {
            bound,
            ca_pem,
            files,
            client,
            shutdown,
            handle: Some(handle),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.bound.webhook.port())
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.bound.admin.port())
    }

    /// POSTs a body the way the apiserver does and returns status and body.
    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> (StatusCode, Bytes) {
        post_with(&self.client, &self.url(path), body.into()).await
    }

    /// POSTs a review and returns the decoded answer, asserting HTTP 200.
    pub async fn review(&self, path: &str, body: impl Into<Bytes>) -> Value {
        let (status, body) = self.post(path, body).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "body: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).expect("JSON answer")
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await.expect("server task");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// POSTs JSON to a URL with a client.
pub async fn post_with(client: &HttpsClient, url: &str, body: Bytes) -> (StatusCode, Bytes) {
    let req = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header("content-type", "application/json")
        .header("user-agent", "kube-apiserver-admission")
        .body(Full::new(body))
        .expect("request");
    let resp = client.request(req).await.expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

/// GETs a plain-HTTP admin URL with a bare TCP client.
pub async fn admin_get(url: &str) -> (StatusCode, String) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let resp = client
        .get(url.parse().expect("url"))
        .await
        .expect("admin response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The `response` of an answer.
pub fn response(answer: &Value) -> &Value {
    &answer["response"]
}

/// Decodes the base64 JSON patch of an answer, if any.
pub fn patch_of(answer: &Value) -> Option<json_patch::Patch> {
    use base64::Engine as _;
    let b64 = answer["response"]["patch"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("patch is base64");
    Some(serde_json::from_slice(&bytes).expect("patch is a JSON patch"))
}

/// Applies an answer's patch to the fixture's `request.object` and decodes the result as a Pod.
pub fn patched_pod(fixture_body: &[u8], answer: &Value) -> (Value, Pod) {
    let review: Value = serde_json::from_slice(fixture_body).expect("fixture JSON");
    let mut object = review["request"]["object"].clone();
    if let Some(patch) = patch_of(answer) {
        json_patch::patch(&mut object, &patch).expect("patch applies");
    }
    let pod: Pod = serde_json::from_value(object.clone()).expect("patched object is a Pod");
    (object, pod)
}

/// A fixture with its `request.object` replaced (for sending a patched pod again).
pub fn with_object(fixture_body: &[u8], object: Value) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(fixture_body).expect("fixture JSON");
    review["request"]["object"] = object;
    serde_json::to_vec(&review).expect("JSON")
}

/// A raw TLS connection to a test server, for tests that misbehave on purpose (silent clients,
/// trickled bodies, lying Content-Lengths) where an HTTP client library would not.
pub type RawTls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// The rustls client config trusting `ca_pem`, offering `alpn`.
pub fn raw_tls_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA cert");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Completes a TLS handshake over an open TCP connection.
pub async fn tls_handshake(
    tcp: tokio::net::TcpStream,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<RawTls> {
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// Reads an HTTP/1.1 response head and returns its status code; `None` if the connection closed
/// first.
pub async fn read_status(stream: &mut RawTls) -> Option<u16> {
    use tokio::io::AsyncReadExt as _;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1).and_then(|c| c.parse().ok())
}

/// Waits until the server closes `stream` (EOF or reset).
pub async fn closed_by_peer(stream: &mut RawTls) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The value of the metrics sample line starting with `prefix` (name and labels).
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

impl TestServer {
    /// A raw TLS connection offering `alpn` (`b"http/1.1"` like the apiserver, or `b"h2"`).
    pub async fn raw_tls(&self, alpn: &[&[u8]]) -> RawTls {
        let tcp = tokio::net::TcpStream::connect(self.bound.webhook)
            .await
            .expect("connect");
        tls_handshake(tcp, raw_tls_config(&self.ca_pem, alpn))
            .await
            .expect("TLS handshake")
    }

    /// The metrics text from the admin port.
    pub async fn metrics(&self) -> String {
        let (status, text) = admin_get(&self.admin_url("/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        text
    }

    /// Starts shutting down without waiting.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }
}
