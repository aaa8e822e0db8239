//! TLS: the rustls server config (TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`) and a certificate
//! store that is reloaded when the mounted files change. Kubernetes updates a mounted Secret in
//! place by swapping a symlink, so the store polls the files' metadata; a bad new pair is logged
//! and the old one kept, and handshakes in flight are never interrupted.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

/// Certificate loading failed; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key: {message}")]
    NoKey { path: String, message: String },
    #[error("{cert} and {key} do not form a usable pair: {source}")]
    Pair {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
}

/// The crypto provider used for serving (ring: no C toolchain beyond `cc` needed).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a [`CertifiedKey`] from PEM bytes; `cert_name`/`key_name` label errors.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_name: &str,
    key_name: &str,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_name.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::NoKey {
        path: key_name.to_owned(),
        message: e.to_string(),
    })?;
    // `from_der` also checks that the key belongs to the certificate.
    CertifiedKey::from_der(chain, key, &provider()).map_err(|source| TlsError::Pair {
        cert: cert_name.to_owned(),
        key: key_name.to_owned(),
        source,
    })
}

/// The serving certificate, swappable while the server runs.
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore").finish_non_exhaustive()
    }
}

impl CertStore {
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(key)),
        })
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the certificate for handshakes from now on.
    pub fn replace(&self, key: CertifiedKey) {
        let key = Arc::new(key);
        match self.current.write() {
            Ok(mut k) => *k = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }

    /// Seconds since the epoch at which the current leaf certificate expires, if readable.
    pub fn not_after_unix(&self) -> Option<i64> {
        let key = self.current();
        let leaf = key.cert.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        Some(cert.validity().not_after.timestamp())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The rustls server config over a store.
pub fn server_config(store: Arc<CertStore>) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// What identifies a version of a file: it changes when the file is rewritten or its symlink
/// is swapped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        #[cfg(unix)]
        ino: std::os::unix::fs::MetadataExt::ino(&m),
    })
}

/// Files the certificate is read from.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    /// Reads and checks the pair.
    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        certified_key(
            &read(&self.cert)?,
            &read(&self.key)?,
            &self.cert.display().to_string(),
            &self.key.display().to_string(),
        )
    }
}

/// Polls the files every `interval` and swaps the store's certificate when they change, until
/// `shutdown` fires. The files are looked at when this is called, not when the future first
/// runs, so a change made in between is not missed.
pub fn watch(
    files: CertFiles,
    store: Arc<CertStore>,
    interval: Duration,
    shutdown: CancellationToken,
    on_reload: impl Fn(bool) + Send + 'static,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut last = (stamp(&files.cert), stamp(&files.key));
    async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let now = (stamp(&files.cert), stamp(&files.key));
            if now == last {
                continue;
            }
            // A writer may be between the two files: the half-written pair fails the key check,
            // the old certificate stays, and the next poll sees the second file change and
            // retries.
            last = now;
            match files.load() {
                Ok(key) => {
                    store.replace(key);
                    tracing::info!(cert = %files.cert.display(), "reloaded TLS certificate");
                    on_reload(true);
                }
                Err(error) => {
                    tracing::warn!(%error, "new TLS certificate is not usable; keeping the old one");
                    on_reload(false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a fresh pair the way a Secret volume is updated: new files renamed into place, so
    /// each gets a new inode even when it has the same size and modification time.
    fn write_pair(dir: &Path, ca: &str) -> CertFiles {
        let g = crate::certs::generate(ca, &["localhost".to_owned()], 1).expect("generate");
        let files = CertFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        for (path, pem) in [(&files.cert, &g.cert_pem), (&files.key, &g.key_pem)] {
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, pem).expect("write");
            std::fs::rename(&tmp, path).expect("rename");
        }
        files
    }

    #[tokio::test]
    async fn reloads_are_reported_to_the_hook_and_a_bad_pair_keeps_the_old_one() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_pair(dir.path(), "first CA");
        let store = CertStore::new(files.load().expect("load"));
        let first = store.current();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let watcher = tokio::spawn(watch(
            files.clone(),
            store.clone(),
            Duration::from_millis(10),
            shutdown.clone(),
            move |ok| {
                let _ = tx.send(ok);
            },
        ));

        write_pair(dir.path(), "second CA");
        // The watcher may see the new certificate before the new key (a mismatched pair, kept
        // out); it reloads once both are there.
        loop {
            if rx.recv().await.expect("watcher running") {
                break;
            }
        }
        let second = store.current();
        assert!(!Arc::ptr_eq(&first, &second));

        let tmp = files.key.with_extension("new");
        std::fs::write(&tmp, "not a key").expect("write");
        std::fs::rename(&tmp, &files.key).expect("rename");
        assert_eq!(rx.recv().await, Some(false));
        assert!(Arc::ptr_eq(&second, &store.current()), "old pair kept");

        shutdown.cancel();
        watcher.await.expect("watcher");
    }
}
