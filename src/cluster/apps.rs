//! The `apps` kinds a workload get reads, each spelling its spec its own way: what
//! [`super::KubeCluster`] turns into a [`super::Workload`].

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::de::DeserializeOwned;

/// The `apps` kinds a workload lookup reads, each spelling its spec its own way.
pub(super) trait AppsWorkload:
    kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
{
    /// `spec.replicas` (none for a DaemonSet), `spec.selector`, `spec.template`.
    fn into_parts(self) -> (Option<i32>, LabelSelector, Option<PodTemplateSpec>);
}

impl AppsWorkload for Deployment {
    fn into_parts(self) -> (Option<i32>, LabelSelector, Option<PodTemplateSpec>) {
        (
            self.spec.replicas,
            self.spec.selector,
            Some(self.spec.template),
        )
    }
}

impl AppsWorkload for StatefulSet {
    fn into_parts(self) -> (Option<i32>, LabelSelector, Option<PodTemplateSpec>) {
        (
            self.spec.replicas,
            self.spec.selector,
            Some(self.spec.template),
        )
    }
}

impl AppsWorkload for ReplicaSet {
    fn into_parts(self) -> (Option<i32>, LabelSelector, Option<PodTemplateSpec>) {
        (self.spec.replicas, self.spec.selector, self.spec.template)
    }
}

impl AppsWorkload for DaemonSet {
    fn into_parts(self) -> (Option<i32>, LabelSelector, Option<PodTemplateSpec>) {
        (None, self.spec.selector, Some(self.spec.template))
    }
}
