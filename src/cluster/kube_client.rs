//! [`ClusterView`] on the Kubernetes API. It makes only two kinds of calls: a get by name
//! (namespaces; deployments, statefulsets, replicasets, daemonsets) and a list within one
//! namespace (services; pods with a labelSelector). Nothing is watched and nothing cluster-wide
//! is listed, so memory does not grow with the cluster. Every call is bounded by
//! `cluster.lookupTimeoutMs`; get results are kept for `cluster.cacheTtlSeconds` in a cache of at
//! most `cluster.cacheMaxEntries` entries.
//!
//! Lists are never cached: they answer "is there another buildkitd, or a Service in front of
//! it, right now?", and a list cached a moment before the first of two pods was created would
//! let the second one through.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::de::DeserializeOwned;

use super::{ClusterView, LookupError, NoCluster, Workload, WorkloadKind, label_selector};
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

/// Lookups against the Kubernetes API.
pub struct KubeCluster {
    client: kube::Client,
    timeout: Duration,
    cache: TtlCache<Key, Cached>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Namespace(String),
    Workload(WorkloadKind, String, String),
}

#[derive(Debug, Clone)]
enum Cached {
    Labels(Option<BTreeMap<String, String>>),
    // Boxed: a pod template is large, a label map small.
    Workload(Option<Box<Workload>>),
}

impl KubeCluster {
    /// A view on `client` with the timeout and cache bounds of `settings`.
    pub fn new(client: kube::Client, settings: &config::Cluster) -> Self {
        Self {
            client,
            timeout: Duration::from_millis(settings.lookup_timeout_ms),
            cache: TtlCache::new(
                Duration::from_secs(settings.cache_ttl_seconds),
                settings.cache_max_entries,
            ),
        }
    }

    /// Runs one API call within the timeout.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, LookupError> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(LookupError::Timeout(
                u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            )),
            Ok(Err(error)) => Err(api_error(error)),
            Ok(Ok(value)) => Ok(value),
        }
    }

    async fn get_workload(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Workload>, LookupError> {
        match kind {
            WorkloadKind::Deployment => self.get::<Deployment>(kind, namespace, name).await,
            WorkloadKind::StatefulSet => self.get::<StatefulSet>(kind, namespace, name).await,
            WorkloadKind::ReplicaSet => self.get::<ReplicaSet>(kind, namespace, name).await,
            WorkloadKind::DaemonSet => self.get::<DaemonSet>(kind, namespace, name).await,
        }
    }

    async fn get<K: AppsWorkload>(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Workload>, LookupError> {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        Ok(self.call(api.get_opt(name)).await?.map(|obj| {
            let (replicas, selector, template) = obj.into_parts();
            Workload {
                kind,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                replicas,
                selector: Some(selector),
                template: template.unwrap_or_default(),
            }
        }))
    }
}

/// The `apps` kinds a workload lookup reads, each spelling its spec its own way.
trait AppsWorkload:
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

/// Says what went wrong in words fit for a denial message.
fn api_error(error: kube::Error) -> LookupError {
    match error {
        kube::Error::Api(status) => LookupError::Api(format!(
            "the Kubernetes API answered {} {}: {}",
            status.code, status.reason, status.message
        )),
        other => LookupError::Api(format!("cannot reach the Kubernetes API: {other}")),
    }
}

#[async_trait]
impl ClusterView for KubeCluster {
    async fn namespace_labels(
        &self,
        namespace: &str,
    ) -> Result<Option<BTreeMap<String, String>>, LookupError> {
        let key = Key::Namespace(namespace.to_owned());
        if let Some(Cached::Labels(labels)) = self.cache.get(&key, Instant::now()) {
            return Ok(labels);
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let labels = self
            .call(api.get_opt(namespace))
            .await?
            .map(|ns| ns.metadata.labels.unwrap_or_default());
        self.cache
            .insert(key, Cached::Labels(labels.clone()), Instant::now());
        Ok(labels)
    }

    async fn workload(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Workload>, LookupError> {
        let key = Key::Workload(kind, namespace.to_owned(), name.to_owned());
        if let Some(Cached::Workload(w)) = self.cache.get(&key, Instant::now()) {
            return Ok(w.map(|w| *w));
        }
        let w = self.get_workload(kind, namespace, name).await?;
        self.cache.insert(
            key,
            Cached::Workload(w.clone().map(Box::new)),
            Instant::now(),
        );
        Ok(w)
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, LookupError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        Ok(self.call(api.list(&ListParams::default())).await?.items)
    }

    async fn pods(
        &self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<Pod>, LookupError> {
        // An empty selector selects nothing (see `selector_matches`); never list everything.
        if selector.is_empty() {
            return Ok(Vec::new());
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = ListParams::default().labels(&label_selector(selector));
        Ok(self.call(api.list(&params)).await?.items)
    }
}

/// A map whose entries expire `ttl` after insertion and that never holds more than `max`
/// entries: when full, expired entries go first, then the oldest one. Time is passed in so
/// tests need no clock.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// A cache; `ttl` zero or `max` zero disables it.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        // A panic while holding the lock cannot leave the map half-updated: recover it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) < self.ttl
    }

    /// The value stored under `key`, if it has not expired at `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some((at, v)) if self.fresh(*at, now) => Some(v.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` under `key` as of `now`.
    pub fn insert(&self, key: K, value: V, now: Instant) {
        if self.ttl.is_zero() || self.max == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.max && !entries.contains_key(&key) {
            entries.retain(|_, (at, _)| now.saturating_duration_since(*at) < self.ttl);
            if entries.len() >= self.max
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (now, value));
    }

    /// How many entries are held (expired ones included until they are dropped).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::{Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock;

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn settings() -> config::Cluster {
        config::Cluster {
            lookup_timeout_ms: 500,
            ..Default::default()
        }
    }

    fn cluster_with(settings: &config::Cluster) -> (KubeCluster, Handle) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        (KubeCluster::new(client, settings), handle)
    }

    /// Answers the given requests in order, asserting each one's method and URI, then returns
    /// how many it answered. A request that is not expected fails the test by hanging into the
    /// lookup timeout.
    fn serve(
        mut handle: Handle,
        exchanges: Vec<(&'static str, u16, Value)>,
    ) -> tokio::task::JoinHandle<usize> {
        tokio::spawn(async move {
            let mut n = 0;
            for (uri, status, body) in exchanges {
                let (request, send) = handle.next_request().await.expect("a request");
                assert_eq!(request.method(), hyper::Method::GET);
                assert_eq!(request.uri().to_string(), uri);
                let response = Response::builder()
                    .status(StatusCode::from_u16(status).expect("status"))
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).expect("json")))
                    .expect("response");
                send.send_response(response);
                n += 1;
            }
            n
        })
    }

    fn status(code: u16, reason: &str, message: &str) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code})
    }

    fn deployment(replicas: i32) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "earthly-buildkitd", "namespace": "earthly-ci"},
            "spec": {"replicas": replicas,
                "selector": {"matchLabels": {"app": "earthly"}},
                "template": {"metadata": {"labels": {"app": "earthly"}},
                    "spec": {"containers": [{"name": "buildkitd", "image": "earthly/buildkitd:v0.8.15"}]}}}})
    }

    fn list(kind: &str, items: Value) -> Value {
        json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
    }

    #[tokio::test]
    async fn namespace_labels_are_one_get_then_cached() {
        let (cluster, handle) = cluster_with(&settings());
        let server = serve(
            handle,
            vec![(
                "/api/v1/namespaces/earthly-ci",
                200,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "earthly-ci",
                    "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}),
            )],
        );
        let expected: BTreeMap<String, String> = [(
            "pod-security.kubernetes.io/enforce".to_owned(),
            "baseline".to_owned(),
        )]
        .into_iter()
        .collect();
        let first = cluster.namespace_labels("earthly-ci").await;
        assert_eq!(first, Ok(Some(expected.clone())));
        // Served from the cache: the mock answers no second request.
        let second = cluster.namespace_labels("earthly-ci").await;
        assert_eq!(second, Ok(Some(expected)));
        assert_eq!(server.await.expect("server"), 1);
    }

    #[tokio::test]
    async fn missing_namespace_is_none() {
        let (cluster, handle) = cluster_with(&settings());
        let server = serve(
            handle,
            vec![(
                "/api/v1/namespaces/gone",
                404,
                status(404, "NotFound", "namespaces \"gone\" not found"),
            )],
        );
        assert_eq!(cluster.namespace_labels("gone").await, Ok(None));
        server.await.expect("server");
    }

    #[tokio::test]
    async fn workloads_are_got_by_name_in_their_group() {
        let (cluster, handle) = cluster_with(&settings());
        let server = serve(
            handle,
            vec![
                (
                    "/apis/apps/v1/namespaces/earthly-ci/deployments/earthly-buildkitd",
                    200,
                    deployment(3),
                ),
                (
                    "/apis/apps/v1/namespaces/earthly-ci/statefulsets/bk",
                    404,
                    status(404, "NotFound", "not found"),
                ),
                (
                    "/apis/apps/v1/namespaces/earthly-ci/replicasets/bk",
                    404,
                    status(404, "NotFound", "not found"),
                ),
            ],
        );
        let w = cluster
            .workload(WorkloadKind::Deployment, "earthly-ci", "earthly-buildkitd")
            .await
            .expect("lookup")
            .expect("found");
        assert_eq!(w.kind, WorkloadKind::Deployment);
        assert_eq!(w.replicas, Some(3));
        assert_eq!(
            w.template.spec.expect("spec").containers[0]
                .image
                .as_deref(),
            Some("earthly/buildkitd:v0.8.15")
        );
        for kind in [WorkloadKind::StatefulSet, WorkloadKind::ReplicaSet] {
            assert_eq!(cluster.workload(kind, "earthly-ci", "bk").await, Ok(None));
        }
        assert_eq!(server.await.expect("server"), 3);
    }

    #[tokio::test]
    async fn services_are_listed_in_one_namespace() {
        let (cluster, handle) = cluster_with(&settings());
        let server = serve(
            handle,
            vec![(
                "/api/v1/namespaces/earthly-ci/services?",
                200,
                list(
                    "ServiceList",
                    json!([{"metadata": {"name": "bk", "namespace": "earthly-ci"},
                        "spec": {"selector": {"app": "earthly"}}}]),
                ),
            )],
        );
        let services = cluster.services("earthly-ci").await.expect("services");
        assert_eq!(services.len(), 1);
        assert_eq!(services[0].metadata.name.as_deref(), Some("bk"));
        server.await.expect("server");
    }

    #[tokio::test]
    async fn pods_are_listed_with_a_label_selector_and_never_cached() {
        let (cluster, handle) = cluster_with(&settings());
        let uri = "/api/v1/namespaces/earthly-ci/pods?&labelSelector=app%3Dearthly%2Ccomponent%3Dbuildkitd";
        let pods = list(
            "PodList",
            json!([{"metadata": {"name": "bk-0", "namespace": "earthly-ci"},
                "spec": {"containers": [{"name": "b", "image": "earthly/buildkitd"}]}}]),
        );
        let server = serve(
            handle,
            vec![
                (uri, 200, pods.clone()),
                (uri, 200, list("PodList", json!([]))),
            ],
        );
        let selector: BTreeMap<String, String> = [
            ("app".to_owned(), "earthly".to_owned()),
            ("component".to_owned(), "buildkitd".to_owned()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            cluster
                .pods("earthly-ci", &selector)
                .await
                .expect("pods")
                .len(),
            1
        );
        assert_eq!(
            cluster
                .pods("earthly-ci", &selector)
                .await
                .expect("pods")
                .len(),
            0
        );
        assert_eq!(server.await.expect("server"), 2);
    }

    #[tokio::test]
    async fn empty_selector_lists_nothing() {
        let (cluster, _handle) = cluster_with(&settings());
        assert_eq!(
            cluster.pods("earthly-ci", &BTreeMap::new()).await,
            Ok(vec![])
        );
    }

    #[tokio::test]
    async fn forbidden_lookup_says_what_the_api_answered() {
        let (cluster, handle) = cluster_with(&settings());
        let message = "services is forbidden: User \"system:serviceaccount:earthly:webhook\" cannot list resource \"services\" in API group \"\" in the namespace \"earthly-ci\"";
        let server = serve(
            handle,
            vec![(
                "/api/v1/namespaces/earthly-ci/services?",
                403,
                status(403, "Forbidden", message),
            )],
        );
        let err = cluster.services("earthly-ci").await.expect_err("forbidden");
        assert_eq!(
            err.to_string(),
            format!("the Kubernetes API answered 403 Forbidden: {message}")
        );
        server.await.expect("server");
    }

    #[tokio::test]
    async fn silent_api_times_out() {
        let (cluster, _handle) = cluster_with(&config::Cluster {
            lookup_timeout_ms: 50,
            ..Default::default()
        });
        let err = cluster
            .workload(WorkloadKind::Deployment, "ci", "bk")
            .await
            .expect_err("timeout");
        assert_eq!(err, LookupError::Timeout(50));
        assert_eq!(
            err.to_string(),
            "the Kubernetes API did not answer within 50 ms"
        );
    }

    #[tokio::test]
    async fn failed_lookups_are_not_cached() {
        let (cluster, handle) = cluster_with(&settings());
        let uri = "/api/v1/namespaces/ci";
        let server = serve(
            handle,
            vec![
                (uri, 500, status(500, "InternalError", "etcd is down")),
                (uri, 200, json!({"metadata": {"name": "ci"}})),
            ],
        );
        assert!(cluster.namespace_labels("ci").await.is_err());
        assert_eq!(
            cluster.namespace_labels("ci").await,
            Ok(Some(BTreeMap::new()))
        );
        assert_eq!(server.await.expect("server"), 2);
    }

    #[tokio::test]
    async fn closed_connection_is_an_unreachable_api() {
        let (cluster, handle) = cluster_with(&settings());
        drop(handle);
        let err = cluster.services("ci").await.expect_err("closed");
        assert!(
            err.to_string()
                .starts_with("cannot reach the Kubernetes API:"),
            "{err}"
        );
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

    #[test]
    fn cache_entries_expire_after_the_ttl() {
        let cache = TtlCache::new(Duration::from_secs(5), 10);
        let t0 = Instant::now();
        cache.insert("a", 1, t0);
        assert_eq!(cache.get(&"a", t0 + Duration::from_secs(4)), Some(1));
        assert_eq!(cache.get(&"a", t0 + Duration::from_secs(5)), None);
        assert!(cache.is_empty(), "an expired entry is dropped when read");
    }

    #[test]
    fn full_cache_drops_expired_entries_first_then_the_oldest() {
        let cache = TtlCache::new(Duration::from_secs(5), 2);
        let t0 = Instant::now();
        cache.insert("old", 1, t0);
        cache.insert("newer", 2, t0 + Duration::from_secs(1));
        cache.insert("third", 3, t0 + Duration::from_secs(2));
        assert_eq!(cache.len(), 2);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(cache.get(&"old", now), None);
        assert_eq!(cache.get(&"newer", now), Some(2));
        assert_eq!(cache.get(&"third", now), Some(3));

        // Both expired by now: they make room before anything fresh is evicted.
        let later = t0 + Duration::from_secs(10);
        cache.insert("fourth", 4, later);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn cache_never_grows_beyond_its_bound() {
        let cache = TtlCache::new(Duration::from_secs(60), 16);
        let t0 = Instant::now();
        for i in 0..1000u64 {
            cache.insert(i, i, t0 + Duration::from_millis(i));
        }
        assert_eq!(cache.len(), 16);
        assert_eq!(cache.get(&999, t0 + Duration::from_secs(1)), Some(999));
    }

    #[test]
    fn zero_ttl_disables_the_cache() {
        let cache = TtlCache::new(Duration::ZERO, 16);
        cache.insert("a", 1, Instant::now());
        assert!(cache.is_empty());
    }
}
