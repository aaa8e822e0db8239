//! The rules that need facts from the cluster. Each entry point decodes the object, decides from
//! the object alone whether a rule can apply at all (so unrelated objects never cause a lookup),
//! looks up only what that rule needs through [`ClusterView`], and hands the facts to the pure
//! rules in [`crate::validate`]. A failed lookup follows `cluster.failureMode`.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v1::ScaleSpec;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use serde::Deserialize;

use super::{Policy, decode, detection_violation, object};
use crate::cluster::{ClusterView, LookupError, PodQuery, Workload, WorkloadKind, label_selector};
use crate::config::{FailureMode, Instances};
use crate::detect::Found;
use crate::validate::{
    self, Findings, Violation, bare_pod, buildkitd, hpa, pod_security, scale, service, workload,
};

/// Audit annotation key of a check that could not be made.
pub const RULE_LOOKUP_FAILED: &str = "lookup-failed";

/// Why an entry point stopped early.
enum Stop {
    /// The object cannot be read: the review fails with this message.
    Unreadable(String),
    /// The answer is known early (a lookup failed and the failure mode decided).
    Done(Findings),
}

impl From<String> for Stop {
    fn from(message: String) -> Self {
        Stop::Unreadable(message)
    }
}

/// The object-level checks that may need lookups, by the kind of object under review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// A Deployment, StatefulSet, ReplicaSet or DaemonSet being created or updated.
    Workload(WorkloadKind),
    /// A write to the `scale` subresource of a Deployment, StatefulSet or ReplicaSet.
    Scale,
    /// A HorizontalPodAutoscaler being created or updated.
    Autoscaler,
    /// A Service being created or updated: judged in sticky mode only.
    Service,
}

/// Runs a check; `Err` is an object that cannot be read.
pub(super) async fn check(
    policy: &Policy,
    cluster: &dyn ClusterView,
    request: &AdmissionRequest<DynamicObject>,
    check: Check,
) -> Result<Findings, String> {
    finish(match check {
        Check::Workload(kind) => check_workload(policy, cluster, request, kind).await,
        Check::Scale => check_scale(policy, cluster, request).await,
        Check::Autoscaler => check_autoscaler(policy, cluster, request).await,
        Check::Service => check_service(policy, cluster, request).await,
    })
}

fn finish(outcome: Result<Findings, Stop>) -> Result<Findings, String> {
    match outcome {
        Ok(f) | Err(Stop::Done(f)) => Ok(f),
        Err(Stop::Unreadable(m)) => Err(m),
    }
}

fn nothing() -> Result<Findings, Stop> {
    Ok(Findings::default())
}

/// Lookups made on behalf of one object; failures become findings per the failure mode.
/// Together they get `cluster.lookupTimeoutMs`, so a rule that needs several lookups still
/// answers well within the webhook's own timeout when the API is slow.
struct Lookups<'a> {
    cluster: &'a dyn ClusterView,
    failure: FailureMode,
    /// The object under review, as messages name it.
    subject: &'a str,
    budget_ms: u64,
    deadline: tokio::time::Instant,
}

impl<'a> Lookups<'a> {
    fn new(policy: &Policy, cluster: &'a dyn ClusterView, subject: &'a str) -> Self {
        let budget_ms = policy.config.cluster.lookup_timeout_ms;
        Self {
            cluster,
            failure: policy.config.cluster.failure_mode,
            subject,
            budget_ms,
            deadline: tokio::time::Instant::now() + std::time::Duration::from_millis(budget_ms),
        }
    }

    /// Runs one lookup within what is left of the budget.
    async fn within<T>(
        &self,
        what: impl FnOnce() -> String,
        lookup: impl std::future::Future<Output = Result<T, LookupError>>,
    ) -> Result<T, Stop> {
        match tokio::time::timeout_at(self.deadline, lookup).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.failed(&what(), &error)),
            Err(_) => Err(self.failed(&what(), &LookupError::Timeout(self.budget_ms))),
        }
    }

    fn failed(&self, what: &str, error: &LookupError) -> Stop {
        tracing::warn!(subject = self.subject, lookup = what, %error, "cluster lookup failed");
        let head = format!(
            "{}: cannot check for unsupported buildkitd setups: the lookup of {what} failed: {error}",
            self.subject
        );
        let mut findings = Findings::default();
        match self.failure {
            FailureMode::Deny => findings.violations.push(Violation {
                rule: RULE_LOOKUP_FAILED,
                message: format!(
                    "{head}. Retry once the webhook can reach the Kubernetes API (its \
                     cluster.failureMode is deny)."
                ),
            }),
            FailureMode::Allow => findings.warnings.push(format!(
                "{head}; admitted unchecked (the webhook's cluster.failureMode is allow)"
            )),
        }
        Stop::Done(findings)
    }

    /// The Services of `namespace` in front of pods labelled `labels`.
    async fn services(
        &self,
        namespace: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Result<Vec<Service>, Stop> {
        let Some(labels) = labels else {
            return Ok(Vec::new());
        };
        self.within(
            || format!("the Services of namespace {namespace}"),
            self.cluster.services(namespace, labels),
        )
        .await
    }

    async fn workload(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Workload>, Stop> {
        self.within(
            || format!("{} {namespace}/{name}", kind.as_str()),
            self.cluster.workload(kind, namespace, name),
        )
        .await
    }

    /// Live buildkitd pods `selector` selects. Two answer every rule, even when one of them
    /// is the pod under review; the messages say "at least" of the rest.
    async fn live_buildkitd(
        &self,
        policy: &Policy,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<Pod>, Stop> {
        let what = || {
            format!(
                "the pods of namespace {namespace} labelled {}",
                label_selector(selector)
            )
        };
        let keep = |p: &Pod| buildkitd::is_live_buildkitd(&policy.detector, p);
        let query = PodQuery {
            selector,
            keep: &keep,
            enough: 2,
        };
        self.within(what, self.cluster.pods(namespace, &query))
            .await
    }
}

/// Judges a demand for several buildkitd instances whose pods carry `labels`: always a violation
/// in single mode; in sticky mode, one per non-sticky Service in front of them.
async fn judge(
    policy: &Policy,
    lookups: &Lookups<'_>,
    demand: &buildkitd::Demand,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<Findings, Stop> {
    let b = &policy.config.buildkitd;
    match b.instances {
        Instances::Single => Ok(Findings {
            violations: vec![demand.single()],
            warnings: Vec::new(),
        }),
        Instances::Sticky => {
            let services = lookups.services(namespace, labels).await?;
            Ok(demand.sticky(
                service::fronting(&services, labels),
                b.min_sticky_timeout_seconds,
            ))
        }
    }
}

/// Judges the instances of a pod template: `demand` says, from what detection found in it,
/// whether they are more than one buildkitd.
async fn judge_template(
    policy: &Policy,
    lookups: &Lookups<'_>,
    namespace: &str,
    template: &PodTemplateSpec,
    demand: impl FnOnce(&[Found]) -> Option<buildkitd::Demand>,
) -> Result<Findings, Stop> {
    let Some(spec) = template.spec.as_ref() else {
        return nothing();
    };
    let meta = template.metadata.as_ref();
    let found = policy
        .detector
        .classify(meta.and_then(|m| m.annotations.as_ref()), spec)
        .map_err(|e| Stop::Done(detection_violation(lookups.subject, e)))?;
    let Some(demand) = demand(&found) else {
        return nothing();
    };
    judge(
        policy,
        lookups,
        &demand,
        namespace,
        meta.and_then(|m| m.labels.as_ref()),
    )
    .await
}

fn namespace_of(request: &AdmissionRequest<DynamicObject>) -> &str {
    request.namespace.as_deref().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Deployments, StatefulSets, ReplicaSets, DaemonSets

/// The parts of a workload's `spec` the rules read, common to the four kinds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkloadSpec {
    #[serde(default)]
    replicas: Option<i32>,
    #[serde(default)]
    selector: Option<LabelSelector>,
    #[serde(default)]
    template: Option<PodTemplateSpec>,
}

fn decode_workload(
    kind: WorkloadKind,
    namespace: &str,
    obj: &DynamicObject,
    subject: &str,
) -> Result<Workload, String> {
    let spec: WorkloadSpec = decode(&obj.data, "spec", subject)?;
    Ok(Workload {
        kind,
        namespace: namespace.to_owned(),
        name: obj.metadata.name.clone().unwrap_or_default(),
        replicas: spec.replicas,
        selector: spec.selector,
        template: spec.template.unwrap_or_default(),
    })
}

async fn check_workload(
    policy: &Policy,
    cluster: &dyn ClusterView,
    request: &AdmissionRequest<DynamicObject>,
    kind: WorkloadKind,
) -> Result<Findings, Stop> {
    let obj = object(request)?;
    if obj.metadata.deletion_timestamp.is_some()
        || workload::judged_through_owner(kind, &obj.metadata)
    {
        return nothing();
    }
    let namespace = namespace_of(request);
    let subject = validate::object_ref(kind.as_str(), request.namespace.as_deref(), &obj.metadata);
    let new = decode_workload(kind, namespace, obj, &subject)?;
    if request.operation == Operation::Update
        && let Some(old) = request.old_object.as_ref()
        && let Ok(old) = decode_workload(kind, namespace, old, &subject)
        && workload::same_shape(&old, &new)
    {
        return nothing();
    }
    let lookups = Lookups::new(policy, cluster, &subject);
    judge_template(policy, &lookups, namespace, &new.template, |found| {
        workload::demand(&subject, &new, found)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// The scale subresource

async fn check_scale(
    policy: &Policy,
    cluster: &dyn ClusterView,
    request: &AdmissionRequest<DynamicObject>,
) -> Result<Findings, Stop> {
    let Some(kind) = scale::target_kind(&request.resource.group, &request.resource.resource) else {
        return nothing();
    };
    let namespace = namespace_of(request);
    let subject = format!("{} {namespace}/{}", kind.as_str(), request.name);
    let what = format!("Scale {namespace}/{}", request.name);
    let replicas = |obj: &DynamicObject| -> Result<i32, String> {
        // An absent spec.replicas is 0 to the apiserver (autoscaling/v1 ScaleSpec).
        Ok(decode::<ScaleSpec>(&obj.data, "spec", &what)?
            .replicas
            .unwrap_or(0))
    };
    let new = replicas(object(request)?)?;
    if new <= 1 {
        return nothing();
    }
    if let Some(old) = request.old_object.as_ref()
        && replicas(old).ok() == Some(new)
    {
        return nothing();
    }
    let lookups = Lookups::new(policy, cluster, &subject);
    // Not found: the apiserver answers the scale request with 404 itself.
    let Some(target) = lookups.workload(kind, namespace, &request.name).await? else {
        return nothing();
    };
    judge_template(policy, &lookups, namespace, &target.template, |found| {
        scale::demand(&target, found, new)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// HorizontalPodAutoscalers

async fn check_autoscaler(
    policy: &Policy,
    cluster: &dyn ClusterView,
    request: &AdmissionRequest<DynamicObject>,
) -> Result<Findings, Stop> {
    let obj = object(request)?;
    if obj.metadata.deletion_timestamp.is_some() {
        return nothing();
    }
    let subject = validate::object_ref(
        "HorizontalPodAutoscaler",
        request.namespace.as_deref(),
        &obj.metadata,
    );
    let spec: hpa::AutoscalerSpec = decode(&obj.data, "spec", &subject)?;
    if spec.max_replicas <= 1 {
        return nothing();
    }
    if request.operation == Operation::Update
        && let Some(old) = request.old_object.as_ref()
        && decode::<hpa::AutoscalerSpec>(&old.data, "spec", &subject).ok() == Some(spec.clone())
    {
        return nothing();
    }
    let Some((kind, name)) = hpa::target(&spec) else {
        return nothing();
    };
    let namespace = namespace_of(request);
    let lookups = Lookups::new(policy, cluster, &subject);
    // An autoscaler may be created before its target; the target's own scale requests are
    // judged when the autoscaler makes them.
    let Some(target) = lookups.workload(kind, namespace, name).await? else {
        return nothing();
    };
    judge_template(policy, &lookups, namespace, &target.template, |found| {
        hpa::demand(&subject, &spec, &target, found)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Services

fn decode_service(obj: &DynamicObject, subject: &str) -> Result<Service, String> {
    let spec: ServiceSpec = decode(&obj.data, "spec", subject)?;
    Ok(Service {
        metadata: obj.metadata.clone(),
        spec: Some(spec),
        status: None,
    })
}

async fn check_service(
    policy: &Policy,
    cluster: &dyn ClusterView,
    request: &AdmissionRequest<DynamicObject>,
) -> Result<Findings, Stop> {
    let b = &policy.config.buildkitd;
    if b.instances != Instances::Sticky {
        return nothing();
    }
    let obj = object(request)?;
    if obj.metadata.deletion_timestamp.is_some() {
        return nothing();
    }
    let subject = validate::object_ref("Service", request.namespace.as_deref(), &obj.metadata);
    let new = decode_service(obj, &subject)?;
    if request.operation == Operation::Update
        && let Some(old) = request.old_object.as_ref()
        && let Ok(old) = decode_service(old, &subject)
        && service::same_shape(&old, &new)
    {
        return nothing();
    }
    // A sticky Service, or one that routes to no pods, cannot break the rule: no lookup.
    if !service::needs_pods(&new, b.min_sticky_timeout_seconds) {
        return nothing();
    }
    let Some(selector) = service::pod_selector(&new) else {
        return nothing();
    };
    let lookups = Lookups::new(policy, cluster, &subject);
    let pods = lookups
        .live_buildkitd(policy, namespace_of(request), selector)
        .await?;
    let buildkitd_pods: Vec<String> = pods.iter().map(buildkitd::pod_ref).collect();
    Ok(Findings {
        violations: service::check(
            &subject,
            &new,
            &buildkitd_pods,
            b.min_sticky_timeout_seconds,
        )
        .into_iter()
        .collect(),
        warnings: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// Pods

/// A bare buildkitd pod being created (or relabelled) at `/validate`. `subject` names it and
/// `found` is what detection found in it.
pub(super) async fn bare_pod(
    policy: &Policy,
    cluster: &dyn ClusterView,
    request: &AdmissionRequest<DynamicObject>,
    subject: &str,
    meta: &ObjectMeta,
    found: &[Found],
) -> Result<Findings, String> {
    finish(check_bare_pod(policy, cluster, request, subject, meta, found).await)
}

async fn check_bare_pod(
    policy: &Policy,
    cluster: &dyn ClusterView,
    request: &AdmissionRequest<DynamicObject>,
    subject: &str,
    meta: &ObjectMeta,
    found: &[Found],
) -> Result<Findings, Stop> {
    if !buildkitd::runs_buildkitd(found)
        || !bare_pod::is_bare(meta)
        || meta.deletion_timestamp.is_some()
    {
        return nothing();
    }
    // Of updates, only a change of labels can put the pod behind another Service.
    if request.operation == Operation::Update
        && request
            .old_object
            .as_ref()
            .is_some_and(|old| old.metadata.labels == meta.labels)
    {
        return nothing();
    }
    let b = &policy.config.buildkitd;
    let namespace = namespace_of(request);
    let lookups = Lookups::new(policy, cluster, subject);
    let services = lookups.services(namespace, meta.labels.as_ref()).await?;
    let mut neighbours = Vec::new();
    for svc in service::fronting(&services, meta.labels.as_ref()) {
        if !bare_pod::needs_pods(svc, b.instances, b.min_sticky_timeout_seconds) {
            continue;
        }
        let Some(selector) = service::pod_selector(svc) else {
            continue;
        };
        let others = lookups
            .live_buildkitd(policy, namespace, selector)
            .await?
            .iter()
            .filter(|p| meta.name.is_none() || p.metadata.name != meta.name)
            .map(buildkitd::pod_ref)
            .collect();
        neighbours.push(bare_pod::Neighbours {
            service: svc,
            others,
        });
    }
    Ok(bare_pod::check(
        subject,
        &neighbours,
        b.instances,
        b.min_sticky_timeout_seconds,
    ))
}

/// Pod Security Admission, at `/mutate`: a pod that will run privileged once mutated, in a
/// namespace that enforces `baseline` or `restricted`. Advisory: when the namespace cannot be
/// looked up the check is skipped, whatever the failure mode, since the pod may well be fine.
pub(super) async fn pod_security(
    cluster: &dyn ClusterView,
    request: &AdmissionRequest<DynamicObject>,
    subject: &str,
    found: &[Found],
) -> Findings {
    let privileged: Vec<&Found> = found.iter().filter(|f| f.role.needs_privileges()).collect();
    let Some(namespace) = request
        .namespace
        .as_deref()
        .filter(|_| !privileged.is_empty())
    else {
        return Findings::default();
    };
    let labels = match cluster.namespace_labels(namespace).await {
        Ok(Some(labels)) => labels,
        Ok(None) => return Findings::default(),
        Err(error @ (LookupError::Unavailable | LookupError::Unknown(_))) => {
            // No API at all (a laptop, or `check` without the namespace in its input).
            tracing::debug!(subject, %error, "Pod Security Admission check skipped");
            return Findings::default();
        }
        Err(error) => {
            tracing::warn!(
                subject,
                namespace,
                %error,
                "namespace lookup failed; Pod Security Admission check skipped"
            );
            return Findings::default();
        }
    };
    Findings {
        violations: pod_security::check(subject, namespace, &labels, &privileged)
            .into_iter()
            .collect(),
        warnings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use serde_json::{Value, json};

    use super::super::{Action, Reviewed, Route, review_body};
    use super::*;
    use crate::cluster::MemoryCluster;
    use crate::config::{Config, Mode};

    /// A cluster that records every lookup and answers from memory, or fails every lookup.
    struct Recorder {
        inner: MemoryCluster,
        fail: Option<LookupError>,
        calls: Mutex<Vec<String>>,
    }

    impl Recorder {
        fn new(inner: MemoryCluster) -> Self {
            Self {
                inner,
                fail: None,
                calls: Mutex::new(Vec::new()),
            }
        }

        fn failing(error: LookupError) -> Self {
            Self {
                fail: Some(error),
                ..Self::new(MemoryCluster::default())
            }
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().expect("lock").clone()
        }

        fn record(&self, call: String) -> Result<(), LookupError> {
            self.calls.lock().expect("lock").push(call);
            self.fail.clone().map_or(Ok(()), Err)
        }
    }

    #[async_trait]
    impl ClusterView for Recorder {
        async fn namespace_labels(
            &self,
            namespace: &str,
        ) -> Result<Option<BTreeMap<String, String>>, LookupError> {
            self.record(format!("namespace {namespace}"))?;
            self.inner.namespace_labels(namespace).await
        }

        async fn workload(
            &self,
            kind: WorkloadKind,
            namespace: &str,
            name: &str,
        ) -> Result<Option<Workload>, LookupError> {
            self.record(format!("{} {namespace}/{name}", kind.as_str()))?;
            self.inner.workload(kind, namespace, name).await
        }

        async fn services(
            &self,
            namespace: &str,
            labels: &BTreeMap<String, String>,
        ) -> Result<Vec<Service>, LookupError> {
            self.record(format!("services {namespace}"))?;
            self.inner.services(namespace, labels).await
        }

        async fn pods(
            &self,
            namespace: &str,
            query: &PodQuery<'_>,
        ) -> Result<Vec<Pod>, LookupError> {
            self.record(format!(
                "pods {namespace} {}",
                label_selector(query.selector)
            ))?;
            self.inner.pods(namespace, query).await
        }
    }

    const NS: &str = "ci";

    fn config(yaml: &str) -> Config {
        Config::from_yaml(yaml, "test").expect("config")
    }

    fn single() -> Config {
        Config::default()
    }

    fn sticky() -> Config {
        config("buildkitd: {instances: sticky}")
    }

    fn template(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "bk"}},
            "spec": {"containers": [{"name": "c", "image": image}]}})
    }

    fn deployment(replicas: i32, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "bk", "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bk"}},
                "template": template(image)}})
    }

    fn bk_workload(replicas: i32) -> Workload {
        Workload {
            kind: WorkloadKind::Deployment,
            namespace: NS.to_owned(),
            name: "bk".to_owned(),
            replicas: Some(replicas),
            selector: None,
            template: serde_json::from_value(template("earthly/buildkitd")).expect("template"),
        }
    }

    fn service(name: &str, extra: Value) -> Service {
        let mut spec = json!({"selector": {"app": "bk"}});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": NS}, "spec": spec}))
            .expect("service")
    }

    fn sticky_extra() -> Value {
        json!({"sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}})
    }

    fn bare_pod(name: &str, image: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": "bk"}},
            "spec": {"containers": [{"name": "b", "image": image,
                "securityContext": {"privileged": true},
                "volumeMounts": [{"name": "t", "mountPath": "/tmp/earthly"}]}],
                "volumes": [{"name": "t", "emptyDir": {}}]}})
    }

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    /// An AdmissionReview for `object` (and `old` on UPDATE).
    fn request(
        group: &str,
        kind: &str,
        resource: (&str, &str),
        sub_resource: Option<&str>,
        operation: &str,
        object: Value,
        old: Option<Value>,
    ) -> Vec<u8> {
        let mut r = json!({"uid": "u-1", "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": resource.0, "version": "v1", "resource": resource.1},
            "name": object["metadata"]["name"], "namespace": NS, "operation": operation,
            "userInfo": {}, "object": object});
        if let Some(s) = sub_resource {
            r["subResource"] = json!(s);
        }
        if let Some(old) = old {
            r["oldObject"] = old;
        }
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview", "request": r}))
        .expect("json")
    }

    fn create_deployment(d: Value) -> Vec<u8> {
        request(
            "apps",
            "Deployment",
            ("apps", "deployments"),
            None,
            "CREATE",
            d,
            None,
        )
    }

    fn scale(from: i32, to: i32) -> Vec<u8> {
        let scale = |n: i32| {
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": "bk", "namespace": NS}, "spec": {"replicas": n}})
        };
        request(
            "autoscaling",
            "Scale",
            ("apps", "deployments"),
            Some("scale"),
            "UPDATE",
            scale(to),
            Some(scale(from)),
        )
    }

    fn create_service(s: &Service) -> Vec<u8> {
        let mut v = serde_json::to_value(s).expect("json");
        v["apiVersion"] = json!("v1");
        v["kind"] = json!("Service");
        request("", "Service", ("", "services"), None, "CREATE", v, None)
    }

    fn create_pod(p: Value) -> Vec<u8> {
        request("", "Pod", ("", "pods"), None, "CREATE", p, None)
    }

    async fn run(
        config: Config,
        cluster: &dyn ClusterView,
        action: Action,
        mode: Option<Mode>,
        body: &[u8],
    ) -> Reviewed {
        let policy = Policy::new(config).expect("policy");
        review_body(&policy, cluster, Route { action, mode }, body)
            .await
            .expect("review")
    }

    async fn validate(config: Config, cluster: &dyn ClusterView, body: &[u8]) -> Reviewed {
        run(config, cluster, Action::Validate, None, body).await
    }

    fn denial(r: &Reviewed) -> &str {
        let resp = r.response();
        assert!(!resp.allowed, "expected a denial");
        assert_eq!(resp.result.code, 403);
        &resp.result.message
    }

    fn assert_allowed_quietly(r: &Reviewed) {
        let resp = r.response();
        assert!(resp.allowed, "denied: {}", resp.result.message);
        assert!(resp.warnings.is_none(), "{:?}", resp.warnings);
    }

    // --- unrelated objects are never looked up -------------------------------------------------

    #[tokio::test]
    async fn unrelated_workloads_are_never_looked_up() {
        let c = Recorder::new(MemoryCluster::default());
        for config in [single(), sticky()] {
            for (kind, resource) in [
                ("Deployment", "deployments"),
                ("StatefulSet", "statefulsets"),
                ("ReplicaSet", "replicasets"),
                ("DaemonSet", "daemonsets"),
            ] {
                let mut d = deployment(30, "nginx:1.27");
                d["kind"] = json!(kind);
                let body = request("apps", kind, ("apps", resource), None, "CREATE", d, None);
                assert_allowed_quietly(&validate(config.clone(), &c, &body).await);
            }
        }
        assert_eq!(c.calls(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn unrelated_pods_are_never_looked_up() {
        let c = Recorder::new(MemoryCluster::default());
        let body = create_pod(bare_pod("web", "nginx"));
        for action in [Action::Mutate, Action::Validate] {
            for config in [single(), sticky()] {
                let r = run(config, &c, action, None, &body).await;
                assert!(r.response().allowed);
            }
        }
        assert_eq!(c.calls(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn services_are_not_looked_up_in_single_mode() {
        let c = Recorder::new(MemoryCluster::default());
        let r = validate(single(), &c, &create_service(&service("bk", json!({})))).await;
        assert_allowed_quietly(&r);
        assert_eq!(c.calls(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn sticky_service_is_not_looked_up() {
        let c = Recorder::new(MemoryCluster::default());
        let r = validate(
            sticky(),
            &c,
            &create_service(&service("bk", sticky_extra())),
        )
        .await;
        assert_allowed_quietly(&r);
        assert_eq!(c.calls(), Vec::<String>::new());
    }

    // --- workloads -------------------------------------------------------------------------------

    #[tokio::test]
    async fn rejects_buildkitd_deployment_with_three_replicas_without_lookups() {
        let c = Recorder::new(MemoryCluster::default());
        let r = validate(
            single(),
            &c,
            &create_deployment(deployment(3, "earthly/buildkitd")),
        )
        .await;
        assert_eq!(
            denial(&r),
            "earthly/buildkitd does not support multi-node setups: Deployment ci/bk asks for 3 \
             replicas. Set replicas: 1, or enable sticky multi-instance mode and front it with a \
             Service using sessionAffinity: ClientIP."
        );
        assert_eq!(c.calls(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn metadata_update_of_existing_multi_replica_deployment_passes_unjudged() {
        let c = Recorder::new(MemoryCluster::default());
        let old = deployment(3, "earthly/buildkitd");
        let mut new = old.clone();
        new["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "2"});
        let body = request(
            "apps",
            "Deployment",
            ("apps", "deployments"),
            None,
            "UPDATE",
            new,
            Some(old),
        );
        assert_allowed_quietly(&validate(single(), &c, &body).await);
    }

    #[tokio::test]
    async fn update_that_changes_replicas_is_judged() {
        let c = Recorder::new(MemoryCluster::default());
        let old = deployment(1, "earthly/buildkitd");
        let new = deployment(2, "earthly/buildkitd");
        let body = request(
            "apps",
            "Deployment",
            ("apps", "deployments"),
            None,
            "UPDATE",
            new,
            Some(old),
        );
        assert!(denial(&validate(single(), &c, &body).await).contains("asks for 2 replicas"));
    }

    #[tokio::test]
    async fn deleting_workload_passes_unjudged() {
        let c = Recorder::new(MemoryCluster::default());
        let mut d = deployment(3, "earthly/buildkitd");
        d["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_allowed_quietly(&validate(single(), &c, &create_deployment(d)).await);
    }

    #[tokio::test]
    async fn replicaset_of_a_deployment_passes_unjudged() {
        let c = Recorder::new(MemoryCluster::default());
        let mut rs = deployment(3, "earthly/buildkitd");
        rs["kind"] = json!("ReplicaSet");
        rs["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment",
            "name": "bk", "uid": "u", "controller": true}]);
        let body = request(
            "apps",
            "ReplicaSet",
            ("apps", "replicasets"),
            None,
            "CREATE",
            rs,
            None,
        );
        assert_allowed_quietly(&validate(single(), &c, &body).await);
    }

    #[tokio::test]
    async fn unreadable_role_annotation_in_template_is_reported() {
        let c = Recorder::new(MemoryCluster::default());
        let mut d = deployment(1, "earthly/buildkitd");
        d["spec"]["template"]["metadata"]["annotations"] = json!({"earthly.dev/role": "boss"});
        let r = validate(single(), &c, &create_deployment(d)).await;
        assert!(denial(&r).starts_with("Deployment ci/bk: annotation earthly.dev/role"));
    }

    #[tokio::test]
    async fn sticky_mode_rejects_multi_replica_deployment_behind_plain_service() {
        let c = Recorder::new(MemoryCluster {
            services: vec![
                service("bk", json!({})),
                service("other", json!({"selector": {"app": "web"}})),
            ],
            ..Default::default()
        });
        let r = validate(
            sticky(),
            &c,
            &create_deployment(deployment(3, "earthly/buildkitd")),
        )
        .await;
        assert_eq!(
            denial(&r),
            "earthly/buildkitd multi-instance mode needs sticky sessions: Deployment ci/bk asks \
             for 3 replicas behind Service ci/bk, which has sessionAffinity: None. Set replicas: \
             1, or set sessionAffinity: ClientIP with sessionAffinityConfig.clientIP.timeoutSeconds \
             of at least 600 on the Service."
        );
        assert_eq!(c.calls(), vec!["services ci"]);
    }

    #[tokio::test]
    async fn sticky_mode_accepts_multi_replica_deployment_behind_sticky_service() {
        let c = Recorder::new(MemoryCluster {
            services: vec![service("bk", sticky_extra())],
            ..Default::default()
        });
        let r = validate(
            sticky(),
            &c,
            &create_deployment(deployment(3, "earthly/buildkitd")),
        )
        .await;
        assert_allowed_quietly(&r);
    }

    #[tokio::test]
    async fn sticky_mode_rejects_a_timeout_below_the_configured_minimum() {
        let c = Recorder::new(MemoryCluster {
            services: vec![service("bk", sticky_extra())],
            ..Default::default()
        });
        let config = config("buildkitd: {instances: sticky, minStickyTimeoutSeconds: 3600}");
        let r = validate(
            config,
            &c,
            &create_deployment(deployment(3, "earthly/buildkitd")),
        )
        .await;
        assert!(denial(&r).contains(
            "which keeps a client on one instance for only 600 s (sessionAffinityConfig.clientIP.timeoutSeconds)"
        ));
    }

    // --- scale -----------------------------------------------------------------------------------

    #[tokio::test]
    async fn rejects_scaling_buildkitd_deployment_to_two() {
        let c = Recorder::new(MemoryCluster {
            workloads: vec![bk_workload(1)],
            ..Default::default()
        });
        let r = validate(single(), &c, &scale(1, 2)).await;
        assert_eq!(
            denial(&r),
            "earthly/buildkitd does not support multi-node setups: Deployment ci/bk is being \
             scaled to 2 replicas. Scale it to 1 replica, or enable sticky multi-instance mode \
             and front it with a Service using sessionAffinity: ClientIP."
        );
        assert_eq!(c.calls(), vec!["Deployment ci/bk"]);
    }

    #[tokio::test]
    async fn scaling_to_one_or_to_the_same_count_is_not_looked_up() {
        let c = Recorder::new(MemoryCluster::default());
        assert_allowed_quietly(&validate(single(), &c, &scale(3, 1)).await);
        assert_allowed_quietly(&validate(single(), &c, &scale(3, 3)).await);
        assert_eq!(c.calls(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn scaling_an_unrelated_or_missing_deployment_is_allowed() {
        let mut web = bk_workload(1);
        web.template = serde_json::from_value(template("nginx")).expect("template");
        let c = Recorder::new(MemoryCluster {
            workloads: vec![web],
            ..Default::default()
        });
        assert_allowed_quietly(&validate(single(), &c, &scale(1, 20)).await);
        let empty = Recorder::new(MemoryCluster::default());
        assert_allowed_quietly(&validate(single(), &empty, &scale(1, 20)).await);
    }

    #[tokio::test]
    async fn sticky_mode_scaling_behind_sticky_service_is_allowed() {
        let c = Recorder::new(MemoryCluster {
            workloads: vec![bk_workload(1)],
            services: vec![service("bk", sticky_extra())],
            ..Default::default()
        });
        assert_allowed_quietly(&validate(sticky(), &c, &scale(1, 4)).await);
        assert_eq!(c.calls(), vec!["Deployment ci/bk", "services ci"]);
    }

    // --- lookup failures -------------------------------------------------------------------------

    #[tokio::test]
    async fn failed_lookup_denies_in_deny_mode() {
        let c = Recorder::failing(LookupError::Timeout(2000));
        let r = validate(single(), &c, &scale(1, 2)).await;
        assert_eq!(
            denial(&r),
            "Deployment ci/bk: cannot check for unsupported buildkitd setups: the lookup of \
             Deployment ci/bk failed: the Kubernetes API did not answer within 2000 ms. Retry \
             once the webhook can reach the Kubernetes API (its cluster.failureMode is deny)."
        );
    }

    #[tokio::test]
    async fn failed_lookup_admits_with_a_warning_in_allow_mode() {
        let c = Recorder::failing(LookupError::Unavailable);
        let r = validate(config("cluster: {failureMode: allow}"), &c, &scale(1, 2)).await;
        let resp = r.response();
        assert!(resp.allowed);
        assert_eq!(
            resp.warnings.as_deref(),
            Some(
                &[
                    "Deployment ci/bk: cannot check for unsupported buildkitd setups: the lookup \
                   of Deployment ci/bk failed: no Kubernetes API is configured; admitted \
                   unchecked (the webhook's cluster.failureMode is allow)"
                        .to_owned()
                ][..]
            )
        );
    }

    #[tokio::test]
    async fn failed_lookup_in_warn_mode_is_a_warning_not_a_denial() {
        let c = Recorder::failing(LookupError::Unavailable);
        let r = run(
            single(),
            &c,
            Action::Validate,
            Some(Mode::Warn),
            &scale(1, 2),
        )
        .await;
        assert!(r.response().allowed);
        assert_eq!(r.summary.violations[0].rule, RULE_LOOKUP_FAILED);
    }

    /// A view whose lookups never answer.
    struct Hanging;

    #[async_trait]
    impl ClusterView for Hanging {
        async fn namespace_labels(
            &self,
            _: &str,
        ) -> Result<Option<BTreeMap<String, String>>, LookupError> {
            std::future::pending().await
        }

        async fn workload(
            &self,
            _: WorkloadKind,
            _: &str,
            _: &str,
        ) -> Result<Option<Workload>, LookupError> {
            std::future::pending().await
        }

        async fn services(
            &self,
            _: &str,
            _: &BTreeMap<String, String>,
        ) -> Result<Vec<Service>, LookupError> {
            std::future::pending().await
        }

        async fn pods(&self, _: &str, _: &PodQuery<'_>) -> Result<Vec<Pod>, LookupError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn lookups_of_one_review_share_the_timeout() {
        let r = validate(
            config("cluster: {lookupTimeoutMs: 50}"),
            &Hanging,
            &create_pod(bare_pod("bk-2", "earthly/buildkitd")),
        )
        .await;
        assert!(denial(&r).contains(
            "the lookup of the Services of namespace ci failed: the Kubernetes API did not answer within 50 ms."
        ));
    }

    // --- autoscalers -----------------------------------------------------------------------------

    fn autoscaler(version: &str, max: i32) -> Vec<u8> {
        let hpa = json!({"apiVersion": format!("autoscaling/{version}"), "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "bk", "namespace": NS},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bk"},
                "minReplicas": 1, "maxReplicas": max}});
        request(
            "autoscaling",
            "HorizontalPodAutoscaler",
            ("autoscaling", "horizontalpodautoscalers"),
            None,
            "CREATE",
            hpa,
            None,
        )
    }

    #[tokio::test]
    async fn rejects_autoscaler_of_buildkitd_in_v2_and_v1() {
        for version in ["v2", "v1"] {
            let c = Recorder::new(MemoryCluster {
                workloads: vec![bk_workload(1)],
                ..Default::default()
            });
            let r = validate(single(), &c, &autoscaler(version, 5)).await;
            assert_eq!(
                denial(&r),
                "earthly/buildkitd does not support multi-node setups: HorizontalPodAutoscaler \
                 ci/bk may scale Deployment ci/bk up to 5 replicas. Set maxReplicas: 1 (or remove \
                 the autoscaler), or enable sticky multi-instance mode and front it with a \
                 Service using sessionAffinity: ClientIP."
            );
            assert_eq!(c.calls(), vec!["Deployment ci/bk"]);
        }
    }

    #[tokio::test]
    async fn autoscaler_with_max_one_is_not_looked_up() {
        let c = Recorder::new(MemoryCluster::default());
        assert_allowed_quietly(&validate(single(), &c, &autoscaler("v2", 1)).await);
        assert_eq!(c.calls(), Vec::<String>::new());
    }

    // --- services (sticky mode) ------------------------------------------------------------------

    #[tokio::test]
    async fn sticky_mode_rejects_plain_service_selecting_buildkitd_pods() {
        let c = Recorder::new(MemoryCluster {
            pods: vec![pod(bare_pod("bk-0", "earthly/buildkitd"))],
            ..Default::default()
        });
        let r = validate(sticky(), &c, &create_service(&service("bk", json!({})))).await;
        assert_eq!(
            denial(&r),
            "earthly/buildkitd multi-instance mode needs sticky sessions: Service ci/bk selects \
             buildkitd Pod ci/bk-0 but has sessionAffinity: None. Set sessionAffinity: ClientIP \
             with sessionAffinityConfig.clientIP.timeoutSeconds of at least 600, or change its \
             selector so that it selects no buildkitd pods."
        );
        assert_eq!(c.calls(), vec!["pods ci app=bk"]);
    }

    #[tokio::test]
    async fn sticky_mode_accepts_plain_service_selecting_other_pods() {
        let c = Recorder::new(MemoryCluster {
            pods: vec![pod(bare_pod("web-0", "nginx"))],
            ..Default::default()
        });
        let r = validate(sticky(), &c, &create_service(&service("bk", json!({})))).await;
        assert_allowed_quietly(&r);
    }

    // --- bare pods -------------------------------------------------------------------------------

    #[tokio::test]
    async fn rejects_second_bare_buildkitd_pod_behind_the_same_service() {
        let c = Recorder::new(MemoryCluster {
            services: vec![service("bk", json!({}))],
            pods: vec![pod(bare_pod("bk-1", "earthly/buildkitd"))],
            ..Default::default()
        });
        let r = validate(
            single(),
            &c,
            &create_pod(bare_pod("bk-2", "earthly/buildkitd")),
        )
        .await;
        assert_eq!(
            denial(&r),
            "earthly/buildkitd does not support multi-node setups: Pod ci/bk-2 would be a second \
             buildkitd behind Service ci/bk, next to Pod ci/bk-1. Run one buildkitd per Service \
             (delete Pod ci/bk-1 first), or enable sticky multi-instance mode and front it with a \
             Service using sessionAffinity: ClientIP."
        );
        assert_eq!(c.calls(), vec!["services ci", "pods ci app=bk"]);
    }

    #[tokio::test]
    async fn terminating_or_finished_buildkitd_pod_does_not_count() {
        let mut going = bare_pod("bk-1", "earthly/buildkitd");
        going["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let mut done = bare_pod("bk-0", "earthly/buildkitd");
        done["status"] = json!({"phase": "Failed"});
        let c = Recorder::new(MemoryCluster {
            services: vec![service("bk", json!({}))],
            pods: vec![pod(going), pod(done)],
            ..Default::default()
        });
        let r = validate(
            single(),
            &c,
            &create_pod(bare_pod("bk-2", "earthly/buildkitd")),
        )
        .await;
        assert!(r.response().allowed);
    }

    #[tokio::test]
    async fn bare_buildkitd_pod_behind_no_service_is_allowed() {
        let c = Recorder::new(MemoryCluster {
            pods: vec![pod(bare_pod("bk-1", "earthly/buildkitd"))],
            ..Default::default()
        });
        let r = validate(
            single(),
            &c,
            &create_pod(bare_pod("bk-2", "earthly/buildkitd")),
        )
        .await;
        assert!(r.response().allowed);
        assert_eq!(c.calls(), vec!["services ci"]);
    }

    #[tokio::test]
    async fn controller_owned_buildkitd_pod_is_not_looked_up() {
        let c = Recorder::new(MemoryCluster::default());
        let mut p = bare_pod("bk-2", "earthly/buildkitd");
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": "bk-7f5c", "uid": "u", "controller": true}]);
        assert!(
            validate(single(), &c, &create_pod(p))
                .await
                .response()
                .allowed
        );
        assert_eq!(c.calls(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn bare_pod_update_without_label_change_is_not_looked_up() {
        let c = Recorder::new(MemoryCluster::default());
        let p = bare_pod("bk-2", "earthly/buildkitd");
        let mut new = p.clone();
        new["metadata"]["annotations"] = json!({"note": "x"});
        let body = request("", "Pod", ("", "pods"), None, "UPDATE", new, Some(p));
        assert!(validate(single(), &c, &body).await.response().allowed);
        assert_eq!(c.calls(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn sticky_mode_accepts_second_bare_pod_behind_sticky_service_without_listing_pods() {
        let c = Recorder::new(MemoryCluster {
            services: vec![service("bk", sticky_extra())],
            pods: vec![pod(bare_pod("bk-1", "earthly/buildkitd"))],
            ..Default::default()
        });
        let r = validate(
            sticky(),
            &c,
            &create_pod(bare_pod("bk-2", "earthly/buildkitd")),
        )
        .await;
        assert!(r.response().allowed);
        assert_eq!(c.calls(), vec!["services ci"]);
    }

    // --- Pod Security Admission at /mutate -------------------------------------------------------

    fn runner_pod() -> Vec<u8> {
        create_pod(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "runner", "namespace": NS},
            "spec": {"containers": [{"name": "earthly", "image": "earthly/earthly:v0.8.15"}]}}))
    }

    fn namespace(level: &str) -> MemoryCluster {
        MemoryCluster {
            namespaces: [(
                NS.to_owned(),
                [(
                    "pod-security.kubernetes.io/enforce".to_owned(),
                    level.to_owned(),
                )]
                .into_iter()
                .collect(),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn mutation_in_baseline_namespace_is_denied_in_enforce_mode() {
        let c = Recorder::new(namespace("baseline"));
        let r = run(single(), &c, Action::Mutate, None, &runner_pod()).await;
        assert_eq!(
            denial(&r),
            "Pod ci/runner: container earthly (all-in-one Earthly runner) must run privileged, \
             but namespace ci enforces the baseline Pod Security Standard \
             (pod-security.kubernetes.io/enforce: baseline), so Pod Security Admission will \
             refuse the pod. Label the namespace pod-security.kubernetes.io/enforce: privileged, \
             or run Earthly in a namespace that allows privileged pods."
        );
        assert!(r.response().patch.is_none());
        assert_eq!(c.calls(), vec!["namespace ci"]);
    }

    #[tokio::test]
    async fn mutation_in_restricted_namespace_is_a_warning_in_warn_mode() {
        let c = Recorder::new(namespace("restricted"));
        let r = run(
            single(),
            &c,
            Action::Mutate,
            Some(Mode::Warn),
            &runner_pod(),
        )
        .await;
        let resp = r.response();
        assert!(resp.allowed);
        assert!(resp.patch.is_some(), "the pod is still mutated");
        let warnings = resp.warnings.as_ref().expect("warnings");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("enforces the restricted Pod Security Standard"))
        );
    }

    #[tokio::test]
    async fn mutation_in_privileged_namespace_is_allowed() {
        let c = Recorder::new(namespace("privileged"));
        let r = run(single(), &c, Action::Mutate, None, &runner_pod()).await;
        assert!(r.response().allowed);
        assert!(r.response().patch.is_some());
    }

    #[tokio::test]
    async fn failed_namespace_lookup_skips_the_check_even_in_deny_mode() {
        let c = Recorder::failing(LookupError::Timeout(2000));
        let r = run(single(), &c, Action::Mutate, None, &runner_pod()).await;
        let resp = r.response();
        assert!(resp.allowed);
        assert!(resp.patch.is_some());
        assert_eq!(c.calls(), vec!["namespace ci"]);
    }

    #[tokio::test]
    async fn already_privileged_buildkitd_pod_is_checked_too() {
        let c = Recorder::new(namespace("baseline"));
        let r = run(
            single(),
            &c,
            Action::Mutate,
            None,
            &create_pod(bare_pod("bk", "earthly/buildkitd")),
        )
        .await;
        assert!(denial(&r).contains("container b (buildkitd) must run privileged"));
    }

    #[tokio::test]
    async fn remote_client_pod_is_not_checked() {
        let c = Recorder::new(namespace("restricted"));
        let body = create_pod(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "client", "namespace": NS},
            "spec": {"containers": [{"name": "earthly", "image": "earthly/earthly",
                "env": [{"name": "BUILDKIT_HOST", "value": "tcp://bk:8372"}]}]}}));
        let r = run(single(), &c, Action::Mutate, None, &body).await;
        assert_allowed_quietly(&r);
        assert_eq!(c.calls(), Vec::<String>::new());
    }

    // --- modes -----------------------------------------------------------------------------------

    #[tokio::test]
    async fn audit_mode_keeps_every_message_of_a_rule_broken_twice() {
        let c = Recorder::new(MemoryCluster {
            services: vec![service("a", json!({})), service("b", json!({}))],
            ..Default::default()
        });
        let r = run(
            sticky(),
            &c,
            Action::Validate,
            Some(Mode::Audit),
            &create_deployment(deployment(3, "earthly/buildkitd")),
        )
        .await;
        let resp = r.response();
        assert!(resp.allowed);
        let note = &resp.audit_annotations[buildkitd::RULE_NOT_STICKY];
        assert!(note.contains("behind Service ci/a") && note.contains("; earthly/buildkitd"));
        assert!(note.contains("behind Service ci/b"));
    }
}
