//! Facts some rules need from the cluster, behind a small trait so the rules stay pure and the
//! review can be driven by the real API (server), by other objects of the same input (`check`),
//! or by an in-memory view (tests).

use std::collections::BTreeMap;

use async_trait::async_trait;

/// Why a lookup gave no answer. The message is shown to the user, after "lookup failed: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No API is configured (for example `serve` on a laptop with no kubeconfig).
    #[error("no Kubernetes API is configured")]
    Unavailable,
    /// The API did not answer in time.
    #[error("the Kubernetes API did not answer within {0} ms")]
    Timeout(u64),
    /// The API answered with an error.
    #[error("{0}")]
    Api(String),
}

/// Read-only lookups against the cluster, each scoped to what one request needs.
#[async_trait]
pub trait ClusterView: Send + Sync {
    /// The labels of a namespace; `Ok(None)` when it does not exist.
    async fn namespace_labels(
        &self,
        namespace: &str,
    ) -> Result<Option<BTreeMap<String, String>>, LookupError>;
}

/// A view with no cluster behind it: every lookup is [`LookupError::Unavailable`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCluster;

#[async_trait]
impl ClusterView for NoCluster {
    async fn namespace_labels(
        &self,
        _namespace: &str,
    ) -> Result<Option<BTreeMap<String, String>>, LookupError> {
        Err(LookupError::Unavailable)
    }
}
