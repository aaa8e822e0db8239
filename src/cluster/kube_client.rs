//! [`ClusterView`] on the Kubernetes API. It makes only two kinds of calls: a get by name
//! (namespaces; deployments, statefulsets, replicasets, daemonsets; services) and a list within one
//! namespace (services; pods with a labelSelector). Nothing is watched and nothing cluster-wide
//! is listed, so memory does not grow with the cluster. Every lookup is bounded by
//! `cluster.lookupTimeoutMs`.
//!
//! Lists do not grow with the namespace either: they are read in pages (`limit` + `continue`),
//! each item decoded into the few fields the rules read ([`super::slim`]), only the items that
//! answer the question kept, and reading stops once the answer is known (a pod query's
//! `enough`).
//!
//! Every answer, get or list, is kept for `cluster.cacheTtlSeconds` in one cache of at most
//! `cluster.cacheMaxEntries` entries, and identical lookups in flight are made once
//! ([`Coalescer`]): a burst of reviews in one namespace makes one API call. The price of caching
//! lists is that a pod or Service created within the TTL may be missed by a review; admission
//! cannot close that race anyway (two pods created at once are both reviewed before either
//! exists), and the TTL defaults to 5 s.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};

use super::apps::AppsWorkload;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::Api;
use kube::api::ListParams;

use super::slim::{Page, SlimPod, SlimService};
use super::{
    ClusterView, Coalescer, LookupError, PodQuery, TtlCache, Workload, WorkloadKind, label_selector,
};
use crate::config;

/// Items per page of a Service list: ~800 bytes of JSON each, so a page is ~200 KB. Pages of 100
/// were measured too: no less RSS growth (it moves in the allocator's 2 MiB steps) and 2.5 times
/// the list calls (docs/benchmarks.md, "Lookups").
const SERVICE_PAGE: u32 = 250;
/// Items per page of a pod list: a pod is several KB of JSON, and a query usually wants the
/// first one or two.
const POD_PAGE: u32 = 50;

/// Lookups against the Kubernetes API.
pub struct KubeCluster {
    client: kube::Client,
    timeout: Duration,
    cache: TtlCache<Key, Cached>,
    in_flight: Coalescer<Key, Result<Cached, LookupError>>,
}

/// A question to the API. Lists are keyed by what the rule asked, not by the namespace alone,
/// so a cached answer is as small as the answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Namespace(String),
    Workload(WorkloadKind, String, String),
    /// Namespace, and the pod labels the Services must select (`label_selector` syntax).
    Services(String, String),
    /// Namespace, label selector, how many pods are enough.
    Pods(String, String, usize),
    /// Namespace and name of one Service.
    Service(String, String),
}

#[derive(Debug, Clone)]
enum Cached {
    Labels(Option<BTreeMap<String, String>>),
    // Boxed: a pod template is large, a label map small.
    Workload(Option<Box<Workload>>),
    Services(Arc<Vec<Service>>),
    Pods(Arc<Vec<Pod>>),
    Service(Option<Box<Service>>),
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
            in_flight: Coalescer::default(),
        }
    }

    /// The answer to `key`: from the cache, else from the lookup in flight for it, else from
    /// `fetch` run within the timeout. Failures are shared with the callers waiting on them but
    /// never cached.
    async fn answer<F>(&self, key: Key, fetch: F) -> Result<Cached, LookupError>
    where
        F: Future<Output = Result<Cached, LookupError>>,
    {
        if let Some(hit) = self.cache.get(&key, Instant::now()) {
            return Ok(hit);
        }
        self.in_flight
            .run(key.clone(), || async {
                let value = match tokio::time::timeout(self.timeout, fetch).await {
                    Ok(result) => result?,
                    Err(_) => {
                        return Err(LookupError::Timeout(
                            u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                        ));
                    }
                };
                self.cache.insert(key, value.clone(), Instant::now());
                Ok(value)
            })
            .await
    }

    /// Reads the list at `path` page by page. `read` decodes one page's text (so items may
    /// borrow from it), takes what it wants, and says whether to stop; it returns the
    /// continue token of the page.
    async fn list_pages(
        &self,
        path: &str,
        mut params: ListParams,
        mut read: impl FnMut(&str) -> Result<(Option<String>, ControlFlow<()>), serde_json::Error>,
    ) -> Result<(), LookupError> {
        let request = kube::core::Request::new(path);
        loop {
            let call = request
                .list(&params)
                .map_err(|e| LookupError::Api(format!("cannot build the list request: {e}")))?;
            let text = self.client.request_text(call).await.map_err(api_error)?;
            let (next, flow) = read(&text).map_err(|e| {
                LookupError::Api(format!("cannot read the list from the Kubernetes API: {e}"))
            })?;
            match (next, flow) {
                (Some(token), ControlFlow::Continue(())) => params = params.continue_token(&token),
                _ => return Ok(()),
            }
        }
    }

    async fn list_services(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Cached, LookupError> {
        let mut fronting = Vec::new();
        self.list_pages(
            &format!("/api/v1/namespaces/{namespace}/services"),
            ListParams::default().limit(SERVICE_PAGE),
            |text| {
                let page: Page<SlimService<'_>> = serde_json::from_str(text)?;
                let next = page.next().map(str::to_owned);
                fronting.extend(
                    page.items
                        .into_iter()
                        .filter(|s| s.selects(labels))
                        .map(Service::from),
                );
                Ok((next, ControlFlow::Continue(())))
            },
        )
        .await?;
        Ok(Cached::Services(Arc::new(fronting)))
    }

    async fn list_pods(
        &self,
        namespace: &str,
        query: &PodQuery<'_>,
    ) -> Result<Cached, LookupError> {
        let mut wanted = Vec::new();
        let params = ListParams::default()
            .labels(&label_selector(query.selector))
            .limit(POD_PAGE);
        self.list_pages(
            &format!("/api/v1/namespaces/{namespace}/pods"),
            params,
            |text| {
                let page: Page<SlimPod> = serde_json::from_str(text)?;
                let next = page.next().map(str::to_owned);
                for p in page.items.into_iter().map(Pod::from) {
                    if query.wants(&p) {
                        wanted.push(p);
                    }
                    if wanted.len() >= query.enough {
                        return Ok((next, ControlFlow::Break(())));
                    }
                }
                Ok((next, ControlFlow::Continue(())))
            },
        )
        .await?;
        Ok(Cached::Pods(Arc::new(wanted)))
    }

    /// One Service, decoded slim like the listed ones; `None` when the API answers 404.
    async fn get_service(&self, namespace: &str, name: &str) -> Result<Cached, LookupError> {
        let call = kube::core::Request::new(format!("/api/v1/namespaces/{namespace}/services"))
            .get(name, &kube::api::GetParams::default())
            .map_err(|e| LookupError::Api(format!("cannot build the get request: {e}")))?;
        let text = match self.client.request_text(call).await {
            Err(kube::Error::Api(status)) if status.is_not_found() => {
                return Ok(Cached::Service(None));
            }
            other => other.map_err(api_error)?,
        };
        let slim: SlimService<'_> = serde_json::from_str(&text).map_err(|e| {
            LookupError::Api(format!(
                "cannot read the Service from the Kubernetes API: {e}"
            ))
        })?;
        Ok(Cached::Service(Some(Box::new(slim.into()))))
    }

    /// Runs one API call, mapping its error.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, LookupError> {
        call.await.map_err(api_error)
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
        let fetch = async {
            let api: Api<Namespace> = Api::all(self.client.clone());
            let ns = self.call(api.get_opt(namespace)).await?;
            Ok(Cached::Labels(
                ns.map(|ns| ns.metadata.labels.unwrap_or_default()),
            ))
        };
        match self.answer(key, fetch).await? {
            Cached::Labels(labels) => Ok(labels),
            other => Err(mismatch(&other)),
        }
    }

    async fn workload(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Workload>, LookupError> {
        let key = Key::Workload(kind, namespace.to_owned(), name.to_owned());
        let fetch = async {
            let w = self.get_workload(kind, namespace, name).await?;
            Ok(Cached::Workload(w.map(Box::new)))
        };
        match self.answer(key, fetch).await? {
            Cached::Workload(w) => Ok(w.map(|w| *w)),
            other => Err(mismatch(&other)),
        }
    }

    async fn services(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Service>, LookupError> {
        // Labels no selector can match (none at all) are fronted by no Service.
        if labels.is_empty() {
            return Ok(Vec::new());
        }
        let key = Key::Services(namespace.to_owned(), label_selector(labels));
        match self
            .answer(key, self.list_services(namespace, labels))
            .await?
        {
            Cached::Services(s) => Ok(s.as_ref().clone()),
            other => Err(mismatch(&other)),
        }
    }

    async fn pods(&self, namespace: &str, query: &PodQuery<'_>) -> Result<Vec<Pod>, LookupError> {
        // An empty selector selects nothing (see `selector_matches`); never list everything.
        if query.selector.is_empty() || query.enough == 0 {
            return Ok(Vec::new());
        }
        let key = Key::Pods(
            namespace.to_owned(),
            label_selector(query.selector),
            query.enough,
        );
        match self.answer(key, self.list_pods(namespace, query)).await? {
            Cached::Pods(p) => Ok(p.as_ref().clone()),
            other => Err(mismatch(&other)),
        }
    }

    async fn service(&self, namespace: &str, name: &str) -> Result<Option<Service>, LookupError> {
        let key = Key::Service(namespace.to_owned(), name.to_owned());
        match self.answer(key, self.get_service(namespace, name)).await? {
            Cached::Service(s) => Ok(s.map(|s| *s)),
            other => Err(mismatch(&other)),
        }
    }
}

/// An answer of another kind under a key: cannot happen, as each key kind is only ever
/// answered by its own lookup; reported rather than trusted.
fn mismatch(found: &Cached) -> LookupError {
    LookupError::Api(format!(
        "internal error: unexpected cached answer {found:?}"
    ))
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
    async fn service_is_one_get_by_name_then_cached_and_404_is_none() {
        let (cluster, handle) = cluster_with(&settings());
        let server = serve(
            handle,
            vec![
                (
                    "/api/v1/namespaces/earthly-ci/services/bk",
                    200,
                    json!({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": "bk", "namespace": "earthly-ci", "uid": "u"},
                        "spec": {"selector": {"app": "bk"}, "ports": [{"port": 8372}]}}),
                ),
                (
                    "/api/v1/namespaces/earthly-ci/services/gone",
                    404,
                    status(404, "NotFound", "services \"gone\" not found"),
                ),
            ],
        );
        for _ in 0..2 {
            let s = cluster.service("earthly-ci", "bk").await.expect("get");
            let s = s.expect("exists");
            assert_eq!(s.metadata.name.as_deref(), Some("bk"));
            assert_eq!(s.metadata.uid, None, "decoded slim");
            let selector = s.spec.and_then(|s| s.selector).expect("selector");
            assert_eq!(selector.get("app").map(String::as_str), Some("bk"));
        }
        assert_eq!(cluster.service("earthly-ci", "gone").await, Ok(None));
        assert_eq!(server.await.expect("server"), 2);
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

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn service(name: &str, spec: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "earthly-ci"}, "spec": spec})
    }

    fn page(kind: &str, items: Value, next: &str) -> Value {
        json!({"apiVersion": "v1", "kind": kind,
            "metadata": {"resourceVersion": "1", "continue": next}, "items": items})
    }

    const SERVICES: &str = "/api/v1/namespaces/earthly-ci/services?&limit=250";

    #[tokio::test]
    async fn services_are_paged_and_only_those_in_front_are_kept() {
        let (cluster, handle) = cluster_with(&settings());
        let server = serve(
            handle,
            vec![
                (
                    SERVICES,
                    200,
                    page(
                        "ServiceList",
                        json!([
                            service("bk", json!({"selector": {"app": "earthly"}})),
                            service("web", json!({"selector": {"app": "web"}})),
                            service(
                                "alias",
                                json!({"type": "ExternalName",
                                "selector": {"app": "earthly"}})
                            )
                        ]),
                        "t1",
                    ),
                ),
                (
                    "/api/v1/namespaces/earthly-ci/services?&limit=250&continue=t1",
                    200,
                    page(
                        "ServiceList",
                        json!([service(
                            "bk2",
                            json!({"selector": {"app": "earthly",
                            "component": "buildkitd"}})
                        )]),
                        "",
                    ),
                ),
            ],
        );
        let pod = labels(&[("app", "earthly"), ("component", "buildkitd")]);
        let names: Vec<_> = cluster
            .services("earthly-ci", &pod)
            .await
            .expect("services")
            .into_iter()
            .map(|s| s.metadata.name.unwrap_or_default())
            .collect();
        assert_eq!(names, ["bk", "bk2"]);
        assert_eq!(server.await.expect("server"), 2);
    }

    #[tokio::test]
    async fn list_answers_are_cached_by_namespace_and_labels() {
        let (cluster, handle) = cluster_with(&settings());
        let answer = page(
            "ServiceList",
            json!([service("bk", json!({"selector": {"app": "earthly"}}))]),
            "",
        );
        // Two different label sets: two lists. The same one again: the cache.
        let server = serve(
            handle,
            vec![(SERVICES, 200, answer.clone()), (SERVICES, 200, answer)],
        );
        let (a, b) = (labels(&[("app", "earthly")]), labels(&[("app", "web")]));
        for l in [&a, &b, &a, &b] {
            let expected = usize::from(l == &a);
            let got = cluster.services("earthly-ci", l).await.expect("services");
            assert_eq!(got.len(), expected);
        }
        assert_eq!(server.await.expect("server"), 2);
    }

    #[tokio::test]
    async fn concurrent_identical_lookups_make_one_list_call() {
        let (cluster, handle) = cluster_with(&settings());
        let server = serve(
            handle,
            vec![(
                SERVICES,
                200,
                page(
                    "ServiceList",
                    json!([service("bk", json!({"selector": {"app": "earthly"}}))]),
                    "",
                ),
            )],
        );
        let l = labels(&[("app", "earthly")]);
        // One task polls all eight: by the time the mock answers, all have joined the first.
        // A second request would go unanswered and time the lookup out.
        let one = || cluster.services("earthly-ci", &l);
        let answers = tokio::join!(one(), one(), one(), one(), one(), one(), one(), one());
        let answers = [
            answers.0, answers.1, answers.2, answers.3, answers.4, answers.5, answers.6, answers.7,
        ];
        for a in answers {
            assert_eq!(a.expect("services").len(), 1);
        }
        assert_eq!(server.await.expect("server"), 1);
        assert!(cluster.in_flight.is_empty());
    }

    fn buildkitd_pod(name: &str, phase: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "earthly-ci",
                "labels": {"app": "earthly", "component": "buildkitd"}},
            "spec": {"containers": [{"name": "b", "image": "earthly/buildkitd"}]},
            "status": {"phase": phase}})
    }

    const PODS: &str = "/api/v1/namespaces/earthly-ci/pods?&labelSelector=app%3Dearthly%2Ccomponent%3Dbuildkitd&limit=50";

    #[tokio::test]
    async fn pod_lists_read_pages_until_enough_are_found() {
        let (cluster, handle) = cluster_with(&settings());
        let server = serve(
            handle,
            vec![
                (
                    PODS,
                    200,
                    page(
                        "PodList",
                        json!([
                            buildkitd_pod("done", "Succeeded"),
                            buildkitd_pod("bk-0", "Running")
                        ]),
                        "t1",
                    ),
                ),
                (
                    // Enough after this page: the "t2" page is never asked for.
                    "/api/v1/namespaces/earthly-ci/pods?&labelSelector=app%3Dearthly%2Ccomponent%3Dbuildkitd&limit=50&continue=t1",
                    200,
                    page(
                        "PodList",
                        json!([
                            buildkitd_pod("bk-1", "Running"),
                            buildkitd_pod("bk-2", "Running")
                        ]),
                        "t2",
                    ),
                ),
            ],
        );
        let selector = labels(&[("app", "earthly"), ("component", "buildkitd")]);
        let running =
            |p: &Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let query = PodQuery {
            selector: &selector,
            keep: &running,
            enough: 2,
        };
        let names: Vec<_> = cluster
            .pods("earthly-ci", &query)
            .await
            .expect("pods")
            .into_iter()
            .map(|p| p.metadata.name.unwrap_or_default())
            .collect();
        assert_eq!(names, ["bk-0", "bk-1"]);
        // Cached: the mock answers nothing more.
        assert_eq!(
            cluster
                .pods("earthly-ci", &query)
                .await
                .expect("pods")
                .len(),
            2
        );
        assert_eq!(server.await.expect("server"), 2);
    }

    #[tokio::test]
    async fn empty_selector_lists_nothing() {
        let (cluster, _handle) = cluster_with(&settings());
        assert_eq!(
            cluster
                .pods("earthly-ci", &PodQuery::all(&BTreeMap::new()))
                .await,
            Ok(vec![])
        );
        assert_eq!(
            cluster.services("earthly-ci", &BTreeMap::new()).await,
            Ok(vec![])
        );
    }

    #[tokio::test]
    async fn forbidden_lookup_says_what_the_api_answered() {
        let (cluster, handle) = cluster_with(&settings());
        let message = "services is forbidden: User \"system:serviceaccount:earthly:webhook\" cannot list resource \"services\" in API group \"\" in the namespace \"earthly-ci\"";
        let server = serve(
            handle,
            vec![(SERVICES, 403, status(403, "Forbidden", message))],
        );
        let err = cluster
            .services("earthly-ci", &labels(&[("app", "earthly")]))
            .await
            .expect_err("forbidden");
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
        let err = cluster
            .services("ci", &labels(&[("app", "earthly")]))
            .await
            .expect_err("closed");
        assert!(
            err.to_string()
                .starts_with("cannot reach the Kubernetes API:"),
            "{err}"
        );
    }
}
