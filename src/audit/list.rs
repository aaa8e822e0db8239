//! Reading the cluster: paged LIST calls (`limit` and `continue`), one namespace at a time, so
//! memory depends on the largest namespace rather than on the cluster. A continue token that
//! expired (`410 Gone`) restarts the namespace from its first page: a list stitched from two
//! snapshots could miss or double objects, and a silently truncated one would hide findings.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use kube::api::ListParams;
use serde::Deserialize;
use serde_json::{Value, json};

/// A collection the audit lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

const fn res(api_version: &'static str, kind: &'static str, plural: &'static str) -> Resource {
    Resource {
        api_version,
        kind,
        plural,
    }
}

/// Namespaces (cluster-scoped).
pub const NAMESPACES: Resource = res("v1", "Namespace", "namespaces");

/// The kinds the webhook judges, in the order they are judged: controllers before the pods and
/// Services that come after them, as `kubectl apply` of a namespace would create them, so a
/// Service finds the pods of every workload behind it.
pub const AUDITED: &[Resource] = &[
    res("apps/v1", "Deployment", "deployments"),
    res("apps/v1", "StatefulSet", "statefulsets"),
    res("apps/v1", "ReplicaSet", "replicasets"),
    res("apps/v1", "DaemonSet", "daemonsets"),
    res("v1", "ReplicationController", "replicationcontrollers"),
    res("batch/v1", "Job", "jobs"),
    res("batch/v1", "CronJob", "cronjobs"),
    res("v1", "Pod", "pods"),
    res(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
    res("v1", "Service", "services"),
];

impl Resource {
    /// `apps/v1` -> `apps`; `v1` -> `` (the core group, as RBAC spells it).
    pub fn group(&self) -> &'static str {
        self.api_version
            .split_once('/')
            .map_or("", |(group, _)| group)
    }

    /// The collection's URL path, in `namespace` or cluster-wide.
    pub fn path(&self, namespace: Option<&str>) -> String {
        let prefix = if self.group().is_empty() {
            format!("/api/{}", self.api_version)
        } else {
            format!("/apis/{}", self.api_version)
        };
        match namespace {
            Some(ns) => format!("{prefix}/namespaces/{ns}/{}", self.plural),
            None => format!("{prefix}/{}", self.plural),
        }
    }
}

/// A LIST that gave no complete answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// `410 Gone`: the continue token expired between two pages.
    #[error("the continue token for {what} expired (410 Gone): {message}")]
    Expired { what: String, message: String },
    /// `403 Forbidden`: names the verb and resource that RBAC refused.
    #[error(
        "permission denied: cannot list {resource}{scope} (HTTP 403: {message}); grant `list` on {resource}, e.g. with the chart's audit ClusterRole"
    )]
    Forbidden {
        resource: String,
        scope: String,
        message: String,
    },
    #[error("listing {what} failed with HTTP {code} {reason}: {message}")]
    Api {
        what: String,
        code: u16,
        reason: String,
        message: String,
    },
    #[error("cannot list {what}: {message}")]
    Connection { what: String, message: String },
}

/// How many times a namespace is read again after a `410 Gone` before giving up.
pub const MAX_ATTEMPTS: usize = 3;

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Value>,
}

/// Lists collections page by page.
#[derive(Clone)]
pub struct Lister {
    client: kube::Client,
    page_size: u32,
}

impl Lister {
    /// `page_size` is the `limit` of each LIST call.
    pub fn new(client: kube::Client, page_size: u32) -> Self {
        Self { client, page_size }
    }

    /// The client, for the calls that are not lists.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Every object of a collection, page by page. Items get the `apiVersion` and `kind` a LIST
    /// leaves out, and lose `managedFields`, which no rule reads and which is often the larger
    /// half of an object.
    pub async fn list(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<Value>, ListError> {
        let what = match namespace {
            Some(ns) => format!("{} in namespace {ns}", resource.plural),
            None => resource.plural.to_owned(),
        };
        let url = resource.path(namespace);
        let mut items = Vec::new();
        let mut continue_token = None;
        loop {
            let params = ListParams {
                label_selector: label_selector.map(str::to_owned),
                limit: Some(self.page_size),
                continue_token: continue_token.take(),
                ..ListParams::default()
            };
            let request = kube::core::Request::new(&url).list(&params).map_err(|e| {
                ListError::Connection {
                    what: what.clone(),
                    message: e.to_string(),
                }
            })?;
            let page: Page = self
                .client
                .request(request)
                .await
                .map_err(|e| list_error(e, resource, namespace, &what))?;
            items.extend(page.items.into_iter().map(|item| typed(item, resource)));
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => continue_token = Some(token),
                _ => return Ok(items),
            }
        }
    }

    /// Every audited object of a namespace, in [`AUDITED`] order. A `410 Gone` on any page
    /// restarts the namespace, at most [`MAX_ATTEMPTS`] times in all.
    pub async fn read_namespace(&self, namespace: &str) -> Result<Vec<Value>, ListError> {
        let mut attempt = 1;
        loop {
            match self.read_once(namespace).await {
                Err(error @ ListError::Expired { .. }) if attempt < MAX_ATTEMPTS => {
                    tracing::warn!(namespace, %error, attempt, "reading the namespace again");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn read_once(&self, namespace: &str) -> Result<Vec<Value>, ListError> {
        let mut all = Vec::new();
        for resource in AUDITED {
            all.extend(self.list(resource, Some(namespace), None).await?);
        }
        Ok(all)
    }
}

fn typed(mut item: Value, resource: &Resource) -> Value {
    if let Some(map) = item.as_object_mut() {
        map.insert("apiVersion".to_owned(), json!(resource.api_version));
        map.insert("kind".to_owned(), json!(resource.kind));
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
    }
    item
}

fn list_error(
    error: kube::Error,
    resource: &Resource,
    namespace: Option<&str>,
    what: &str,
) -> ListError {
    match error {
        kube::Error::Api(status) if status.code == 410 => ListError::Expired {
            what: what.to_owned(),
            message: status.message,
        },
        kube::Error::Api(status) if status.code == 403 => ListError::Forbidden {
            resource: match resource.group() {
                "" => resource.plural.to_owned(),
                group => format!("{}.{group}", resource.plural),
            },
            scope: namespace
                .map(|ns| format!(" in namespace {ns}"))
                .unwrap_or_else(|| " (cluster-wide)".to_owned()),
            message: status.message,
        },
        kube::Error::Api(status) => ListError::Api {
            what: what.to_owned(),
            code: status.code,
            reason: status.reason,
            message: status.message,
        },
        other => ListError::Connection {
            what: what.to_owned(),
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_api_groups() {
        assert_eq!(NAMESPACES.path(None), "/api/v1/namespaces");
        assert_eq!(
            AUDITED[0].path(Some("ci")),
            "/apis/apps/v1/namespaces/ci/deployments"
        );
        assert_eq!(
            AUDITED[4].path(Some("ci")),
            "/api/v1/namespaces/ci/replicationcontrollers"
        );
        assert_eq!(AUDITED[7].path(Some("ci")), "/api/v1/namespaces/ci/pods");
    }

    #[test]
    fn items_get_their_kind_and_lose_managed_fields() {
        let item = json!({"metadata": {"name": "a", "managedFields": [{}]}, "spec": {}});
        let t = typed(item, &AUDITED[0]);
        assert_eq!(t["kind"], "Deployment");
        assert_eq!(t["apiVersion"], "apps/v1");
        assert!(t["metadata"].get("managedFields").is_none());
    }
}
