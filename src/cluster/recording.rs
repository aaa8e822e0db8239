//! The one test double of [`ClusterView`]: answers from a [`MemoryCluster`], records every
//! lookup it is asked, and can fail or hang every lookup instead. Public so the integration tests
//! and benches use the same double as the unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, Service};

use super::{
    ClusterView, LookupError, MemoryCluster, PodQuery, Workload, WorkloadKind, label_selector,
};

/// What every lookup does besides being recorded.
#[derive(Debug, Clone, Default)]
enum Behaviour {
    /// Answers from the memory cluster.
    #[default]
    Answer,
    /// Fails with this error.
    Fail(LookupError),
    /// Never answers (for timeouts).
    Hang,
}

/// A recording view; see the module docs.
#[derive(Debug, Default)]
pub struct Recording {
    inner: MemoryCluster,
    behaviour: Behaviour,
    calls: Mutex<Vec<String>>,
}

impl Recording {
    /// Answers from `inner`.
    pub fn new(inner: MemoryCluster) -> Self {
        Self {
            inner,
            ..Self::default()
        }
    }

    /// Fails every lookup with `error`.
    pub fn failing(error: LookupError) -> Self {
        Self {
            behaviour: Behaviour::Fail(error),
            ..Self::default()
        }
    }

    /// Never answers a lookup.
    pub fn hanging() -> Self {
        Self {
            behaviour: Behaviour::Hang,
            ..Self::default()
        }
    }

    /// The lookups asked so far, in order: `namespace ci`, `Deployment ci/bk`,
    /// `services ci`, `pods ci app=bk`, `service ci/bk`.
    pub fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn record(&self, call: String) -> Result<(), LookupError> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call);
        match &self.behaviour {
            Behaviour::Answer => Ok(()),
            Behaviour::Fail(error) => Err(error.clone()),
            Behaviour::Hang => std::future::pending().await,
        }
    }
}

#[async_trait]
impl ClusterView for Recording {
    async fn namespace_labels(
        &self,
        namespace: &str,
    ) -> Result<Option<BTreeMap<String, String>>, LookupError> {
        self.record(format!("namespace {namespace}")).await?;
        self.inner.namespace_labels(namespace).await
    }

    async fn workload(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Workload>, LookupError> {
        self.record(format!("{} {namespace}/{name}", kind.as_str()))
            .await?;
        self.inner.workload(kind, namespace, name).await
    }

    async fn services(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Service>, LookupError> {
        self.record(format!("services {namespace}")).await?;
        self.inner.services(namespace, labels).await
    }

    async fn pods(&self, namespace: &str, query: &PodQuery<'_>) -> Result<Vec<Pod>, LookupError> {
        self.record(format!(
            "pods {namespace} {}",
            label_selector(query.selector)
        ))
        .await?;
        self.inner.pods(namespace, query).await
    }

    async fn service(&self, namespace: &str, name: &str) -> Result<Option<Service>, LookupError> {
        self.record(format!("service {namespace}/{name}")).await?;
        self.inner.service(namespace, name).await
    }
}
