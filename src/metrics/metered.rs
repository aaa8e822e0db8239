//! Lookup metrics: a [`ClusterView`] wrapper, so every lookup the rules make is counted whatever
//! answers it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, Service};

use super::Metrics;
use crate::cluster::{ClusterView, LookupError, PodQuery, Workload, WorkloadKind};

/// A [`ClusterView`] that counts the calls and failures of the view it wraps.
pub struct MeteredCluster<C: ?Sized> {
    inner: Arc<C>,
    metrics: Arc<Metrics>,
}

impl<C: ?Sized> MeteredCluster<C> {
    pub fn new(inner: Arc<C>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait]
impl<C: ClusterView + ?Sized> ClusterView for MeteredCluster<C> {
    async fn namespace_labels(
        &self,
        namespace: &str,
    ) -> Result<Option<BTreeMap<String, String>>, LookupError> {
        let r = self.inner.namespace_labels(namespace).await;
        self.metrics.record_lookup("namespace_labels", &r);
        r
    }

    async fn workload(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Workload>, LookupError> {
        let r = self.inner.workload(kind, namespace, name).await;
        self.metrics.record_lookup("workload", &r);
        r
    }

    async fn services(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Service>, LookupError> {
        let r = self.inner.services(namespace, labels).await;
        self.metrics.record_lookup("services", &r);
        r
    }

    async fn pods(&self, namespace: &str, query: &PodQuery<'_>) -> Result<Vec<Pod>, LookupError> {
        let r = self.inner.pods(namespace, query).await;
        self.metrics.record_lookup("pods", &r);
        r
    }

    async fn service(&self, namespace: &str, name: &str) -> Result<Option<Service>, LookupError> {
        let r = self.inner.service(namespace, name).await;
        self.metrics.record_lookup("service", &r);
        r
    }
}
