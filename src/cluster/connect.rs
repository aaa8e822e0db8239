//! Which API the server's lookups use: an explicit kubeconfig, the usual places, the in-cluster
//! service account, or none.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::{ClusterView, KubeCluster, NoCluster};
use crate::config;

/// Why no client could be built from an explicitly given kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("--kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// The cluster view `serve` uses: the API described by `kubeconfig` when given (an unusable
/// file is an error), else `KUBECONFIG`/`~/.kube/config`, else the in-cluster service account
/// (`kube::Config::infer`); when there is none of those, [`NoCluster`] with a loud warning, so the server still starts
/// on a laptop and rules that need lookups follow `cluster.failureMode`.
pub async fn from_environment(
    kubeconfig: Option<&Path>,
    settings: &config::Cluster,
) -> Result<Arc<dyn ClusterView>, ConnectError> {
    let config = match client_config(kubeconfig).await? {
        Ok(config) => config,
        Err(error) => {
            tracing::warn!(
                %error,
                "NO KUBERNETES API: no in-cluster service account and no kubeconfig \
                 (KUBECONFIG, ~/.kube/config or --kubeconfig); rules that need cluster \
                 lookups will follow cluster.failureMode"
            );
            return Ok(Arc::new(NoCluster));
        }
    };
    tracing::info!(api = %config.cluster_url, "using the Kubernetes API for lookups");
    let client = kube::Client::try_from(config).map_err(ConnectError::Client)?;
    Ok(Arc::new(KubeCluster::new(client, settings)))
}

/// The client configuration `serve` and `audit` share: `kubeconfig` when given (an unusable
/// file is an error), else what `kube::Config::infer` finds; the inner error says that none
/// was found.
pub async fn client_config(
    kubeconfig: Option<&Path>,
) -> Result<Result<kube::Config, kube::config::InferConfigError>, ConnectError> {
    match kubeconfig {
        Some(path) => {
            let bad = |message: String| ConnectError::Kubeconfig {
                path: path.to_owned(),
                message,
            };
            let file = Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map(Ok)
                .map_err(|e| bad(e.to_string()))
        }
        None => Ok(kube::Config::infer().await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> config::Cluster {
        config::Cluster {
            lookup_timeout_ms: 500,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn explicit_kubeconfig_is_used_for_lookups() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kubeconfig");
        // Port 1 on loopback: nothing listens, so the lookup fails fast and says why.
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{name: k, cluster: {server: 'http://127.0.0.1:1'}}]\n\
             users: [{name: u, user: {token: t}}]\n\
             contexts: [{name: c, context: {cluster: k, user: u}}]\n",
        )
        .expect("write kubeconfig");
        let cluster = from_environment(Some(&path), &settings())
            .await
            .expect("client");
        let err = cluster
            .namespace_labels("ci")
            .await
            .expect_err("nothing listens");
        assert!(
            err.to_string()
                .starts_with("cannot reach the Kubernetes API:"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unreadable_kubeconfig_is_an_error_naming_the_flag() {
        let err =
            match from_environment(Some(Path::new("/nonexistent/kubeconfig")), &settings()).await {
                Err(e) => e.to_string(),
                Ok(_) => panic!("a missing kubeconfig must not fall back"),
            };
        assert!(
            err.starts_with("--kubeconfig /nonexistent/kubeconfig: "),
            "{err}"
        );
    }
}
