//! AdmissionReview in, AdmissionReview out: decodes the request, runs detection, mutation and
//! validation, and applies the policy mode. Shared by the HTTPS server and the `check` command so
//! both give the same answer.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde::Deserialize;
use serde_json::Value;

mod cluster_rules;

use cluster_rules::Check;

use crate::cluster::{ClusterView, WorkloadKind};
use crate::config::{Config, Mode};
use crate::detect::Detector;
use crate::mutate::{self, Rule};
use crate::validate::{self, Findings, Violation};

mod fast;
mod rule_spec;

/// The only AdmissionReview version the webhook speaks (the chart registers just `v1`).
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";
const ADMISSION_KIND: &str = "AdmissionReview";

/// The compiled policy: config plus what is derived from it once at start-up.
#[derive(Debug, Clone)]
pub struct Policy {
    config: Config,
    detector: Detector,
}

impl Policy {
    /// Compiles a validated config. Fails only on image patterns, which
    /// [`Config::from_yaml`] has already checked.
    pub fn new(config: Config) -> Result<Self, globset::Error> {
        let detector = Detector::new(&config.detection)?;
        Ok(Self { config, detector })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }
}

/// What the caller asks for: the endpoint's action and, when the path names one, the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub action: Action,
    pub mode: Option<Mode>,
}

/// The two webhook endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Mutate,
    Validate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Mutate => "mutate",
            Action::Validate => "validate",
        }
    }
}

/// How a review ended, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allowed,
    Mutated,
    Denied,
    /// The object could not be read.
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Mutated => "mutated",
            Verdict::Denied => "denied",
            Verdict::Error => "error",
        }
    }
}

/// What happened, in fields for logs, metrics and the `check` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub uid: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub operation: &'static str,
    pub dry_run: bool,
    pub verdict: Verdict,
    /// Patch operations per mutation rule.
    pub patch_operations: Vec<(Rule, usize)>,
    /// Violations the mode let through (warn) or recorded (audit).
    pub violations: Vec<Violation>,
}

/// A finished review: the answer to send, and its summary.
#[derive(Debug, Clone)]
pub struct Reviewed {
    pub review: AdmissionReview<DynamicObject>,
    pub summary: Summary,
}

impl Reviewed {
    /// The answer as the apiserver expects it on the wire.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        to_wire_json(&self.review)
    }

    /// The response inside the review.
    pub fn response(&self) -> &AdmissionResponse {
        // `finish` always sets it.
        self.review
            .response
            .as_ref()
            .expect("a Reviewed always holds a response")
    }
}

/// Encodes a review for the apiserver. kube serialises `response.patch` (a `Vec<u8>`) as a JSON
/// array of numbers (kube-rs issue #1781); the admission API documents a base64 string, which is
/// also a third of the size. Everything else is kube's own serialisation.
pub fn to_wire_json(review: &AdmissionReview<DynamicObject>) -> Result<Vec<u8>, serde_json::Error> {
    use base64::Engine as _;
    use serde::Serialize;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire<'a> {
        api_version: &'a str,
        kind: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        response: Option<WireResponse<'a>>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct WireResponse<'a> {
        uid: &'a str,
        allowed: bool,
        status: &'a kube::core::Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch_type: Option<&'static str>,
        #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
        audit_annotations: &'a std::collections::HashMap<String, String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        warnings: Option<&'a Vec<String>>,
    }
    let response = review.response.as_ref().map(|r| WireResponse {
        uid: &r.uid,
        allowed: r.allowed,
        status: &r.result,
        patch: r
            .patch
            .as_ref()
            .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
        patch_type: r.patch.as_ref().map(|_| "JSONPatch"),
        audit_annotations: &r.audit_annotations,
        warnings: r.warnings.as_ref(),
    });
    // Sized for a typical answer (a few warnings and a patch), so it is not regrown.
    let mut out = Vec::with_capacity(1024);
    serde_json::to_writer(
        &mut out,
        &Wire {
            api_version: &review.types.api_version,
            kind: &review.types.kind,
            response,
        },
    )?;
    Ok(out)
}

/// A body that is not an AdmissionReview at all: answered with HTTP 400, since there is no uid
/// to answer to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body is empty; expected an {ADMISSION_API_VERSION} AdmissionReview")]
    Empty,
    #[error("request body is not JSON: {0}")]
    NotJson(String),
    #[error(
        "request body is not an {ADMISSION_API_VERSION} AdmissionReview (found apiVersion {api_version:?}, kind {kind:?})"
    )]
    NotAReview { api_version: String, kind: String },
    #[error("AdmissionReview has no request")]
    NoRequest,
    /// The apiserver matches answers to requests by uid and refuses one without.
    #[error("AdmissionReview request has no uid")]
    NoUid,
}

/// Just enough of a review to tell "not a review" from "a review we cannot read".
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    request: Option<EnvelopeRequest>,
}

#[derive(Deserialize)]
struct EnvelopeRequest {
    #[serde(default)]
    uid: Option<Value>,
}

fn operation_str(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// Decodes and reviews one request body.
pub async fn review_body(
    policy: &Policy,
    cluster: &dyn ClusterView,
    route: Route,
    body: &[u8],
) -> Result<Reviewed, BodyError> {
    // Pod CREATEs, nearly all the traffic, skip the general decoding (see `fast`).
    if let Some(reviewed) = fast::review(policy, cluster, route, body).await {
        return Ok(reviewed);
    }
    // Boxed so the rare general path does not size every fast review's future.
    Box::pin(review_body_general(policy, cluster, route, body)).await
}

/// [`review_body`] without its fast path for Pod CREATEs: decodes the body into an
/// `AdmissionReview<DynamicObject>`. Public so tests and the fuzz harness can check that both
/// paths give the same answers.
pub async fn review_body_general(
    policy: &Policy,
    cluster: &dyn ClusterView,
    route: Route,
    body: &[u8],
) -> Result<Reviewed, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    let parsed: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(error) => return unreadable_review(body, &error),
    };
    check_envelope(&parsed.types.api_version, &parsed.types.kind)?;
    let request: AdmissionRequest<DynamicObject> =
        parsed.try_into().map_err(|_| BodyError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(BodyError::NoUid);
    }
    Ok(review(policy, cluster, route, &request).await)
}

fn check_envelope(api_version: &str, kind: &str) -> Result<(), BodyError> {
    if api_version == ADMISSION_API_VERSION && kind == ADMISSION_KIND {
        Ok(())
    } else {
        Err(BodyError::NotAReview {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        })
    }
}

/// A body that failed to decode: a 400 unless it is a review with a uid to answer to.
fn unreadable_review(body: &[u8], error: &serde_json::Error) -> Result<Reviewed, BodyError> {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => return Err(BodyError::NotJson(e.to_string())),
    };
    check_envelope(&envelope.api_version, &envelope.kind)?;
    let Some(request) = envelope.request else {
        return Err(BodyError::NoRequest);
    };
    let uid = match request.uid {
        Some(Value::String(uid)) if !uid.is_empty() => uid,
        _ => return Err(BodyError::NoUid),
    };
    let mut response = AdmissionResponse::invalid(format!("cannot read AdmissionReview: {error}"));
    response.uid = uid.clone();
    Ok(Reviewed {
        review: response.into_review(),
        summary: Summary {
            uid,
            kind: String::new(),
            namespace: None,
            name: String::new(),
            operation: "",
            dry_run: false,
            verdict: Verdict::Error,
            patch_operations: Vec::new(),
            violations: Vec::new(),
        },
    })
}

/// What a request asks of the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    MutatePod,
    ValidatePod,
    Nothing,
}

/// The one dispatch table: which rules a request goes to.
fn target(action: Action, request: &AdmissionRequest<DynamicObject>) -> Target {
    let kind = (request.kind.group.as_str(), request.kind.kind.as_str());
    match (action, kind, request.sub_resource.as_deref()) {
        (Action::Mutate, ("", "Pod"), None) if request.operation == Operation::Create => {
            Target::MutatePod
        }
        (Action::Validate, ("", "Pod"), None)
            if matches!(request.operation, Operation::Create | Operation::Update) =>
        {
            Target::ValidatePod
        }
        _ => Target::Nothing,
    }
}

/// Everything but pods: the workload, scale, autoscaler and Service rules, which may need
/// lookups.
async fn validate_other(
    policy: &Policy,
    cluster: &dyn ClusterView,
    action: Action,
    request: &AdmissionRequest<DynamicObject>,
) -> Result<Findings, String> {
    let kind = (request.kind.group.as_str(), request.kind.kind.as_str());
    let writes = matches!(request.operation, Operation::Create | Operation::Update);
    match (action, kind, request.sub_resource.as_deref()) {
        (Action::Validate, ("apps", kind), None) if writes => match WorkloadKind::parse(kind) {
            Some(kind) => {
                cluster_rules::check(policy, cluster, request, Check::Workload(kind)).await
            }
            None => Ok(Findings::default()),
        },
        (Action::Validate, ("autoscaling", "Scale"), Some("scale"))
            if request.operation == Operation::Update =>
        {
            cluster_rules::check(policy, cluster, request, Check::Scale).await
        }
        (Action::Validate, ("autoscaling", "HorizontalPodAutoscaler"), None) if writes => {
            cluster_rules::check(policy, cluster, request, Check::Autoscaler).await
        }
        (Action::Validate, ("", "Service"), None) if writes => {
            cluster_rules::check(policy, cluster, request, Check::Service).await
        }
        _ => Ok(Findings::default()),
    }
}

/// Reviews a decoded request.
pub async fn review(
    policy: &Policy,
    cluster: &dyn ClusterView,
    route: Route,
    request: &AdmissionRequest<DynamicObject>,
) -> Reviewed {
    review_decoded(policy, cluster, route, request, None).await
}

/// Reviews a request whose pod, when `pod` is given, was decoded already (the fast path's
/// requests carry no `object`).
async fn review_decoded(
    policy: &Policy,
    cluster: &dyn ClusterView,
    route: Route,
    request: &AdmissionRequest<DynamicObject>,
    pod: Option<PodParts<'_>>,
) -> Reviewed {
    let mode = route.mode.unwrap_or(policy.config.policy.default_mode);
    let mut ctx = Ctx {
        response: AdmissionResponse::from(request),
        summary: Summary {
            uid: request.uid.clone(),
            kind: request.kind.kind.clone(),
            namespace: request.namespace.clone(),
            name: request.name.clone(),
            operation: operation_str(&request.operation),
            dry_run: request.dry_run,
            verdict: Verdict::Allowed,
            patch_operations: Vec::new(),
            violations: Vec::new(),
        },
        warnings: Vec::new(),
    };
    let outcome = match target(route.action, request) {
        Target::MutatePod => mutate_pod(policy, cluster, request, pod, &mut ctx).await,
        Target::ValidatePod => validate_pod(policy, cluster, request, pod).await,
        Target::Nothing => validate_other(policy, cluster, route.action, request).await,
    };
    match outcome {
        Ok(findings) => ctx.apply(findings, mode),
        Err(message) => ctx.fail(message),
    }
    ctx.finish()
}

/// The answer being built.
struct Ctx {
    response: AdmissionResponse,
    summary: Summary,
    warnings: Vec<String>,
}

impl Ctx {
    /// Applies findings according to the mode.
    fn apply(&mut self, findings: Findings, mode: Mode) {
        self.warnings.extend(findings.warnings);
        if findings.violations.is_empty() {
            return;
        }
        for v in &findings.violations {
            if mode != Mode::Enforce {
                tracing::info!(
                    uid = %self.summary.uid,
                    namespace = self.summary.namespace.as_deref().unwrap_or(""),
                    name = %self.summary.name,
                    kind = %self.summary.kind,
                    rule = v.rule,
                    mode = mode.as_str(),
                    message = %v.message,
                    "policy violation admitted"
                );
            }
        }
        match mode {
            Mode::Enforce => {
                let message = findings
                    .violations
                    .iter()
                    .map(|v| v.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                self.deny(message);
            }
            Mode::Warn => {
                self.warnings
                    .extend(findings.violations.iter().map(|v| v.message.clone()));
                self.summary.violations = findings.violations;
            }
            Mode::Audit => {
                for v in &findings.violations {
                    // One key per rule: a rule broken twice keeps both messages.
                    self.response
                        .audit_annotations
                        .entry(v.rule.to_owned())
                        .and_modify(|m| {
                            m.push_str("; ");
                            m.push_str(&v.message);
                        })
                        .or_insert_with(|| v.message.clone());
                }
                self.summary.violations = findings.violations;
            }
        }
    }

    fn deny(&mut self, message: String) {
        // A denial drops the patch: nothing is created, so nothing is mutated.
        let mut denied = AdmissionResponse::from_parts_of(&self.response).deny(message);
        denied.result.code = 403;
        denied.result.reason = "Forbidden".to_owned();
        self.response = denied;
        self.summary.verdict = Verdict::Denied;
        self.summary.patch_operations.clear();
    }

    /// The object could not be read: refuse it, saying what is wrong.
    fn fail(&mut self, message: String) {
        let mut failed = AdmissionResponse::from_parts_of(&self.response).deny(message);
        failed.result.code = 400;
        failed.result.reason = "BadRequest".to_owned();
        self.response = failed;
        self.summary.verdict = Verdict::Error;
        self.summary.patch_operations.clear();
    }

    fn finish(mut self) -> Reviewed {
        if !self.warnings.is_empty() {
            self.response.warnings = Some(self.warnings);
        }
        Reviewed {
            review: self.response.into_review(),
            summary: self.summary,
        }
    }
}

trait FromPartsOf {
    /// A fresh response with the same uid and types as `other`, allowed, without patch.
    fn from_parts_of(other: &AdmissionResponse) -> AdmissionResponse;
}

impl FromPartsOf for AdmissionResponse {
    fn from_parts_of(other: &AdmissionResponse) -> AdmissionResponse {
        let mut fresh = AdmissionResponse::invalid("");
        fresh.types = other.types.clone();
        fresh.uid = other.uid.clone();
        fresh.allowed = true;
        fresh.result = Default::default();
        fresh.audit_annotations = other.audit_annotations.clone();
        fresh
    }
}

/// A pod from the request, decoded into typed metadata and spec; errors name the field.
pub(crate) struct PodParts<'a> {
    pub meta: &'a ObjectMeta,
    // Boxed: a `PodSpec` is 1.5 KiB, and the review future would carry it by value.
    pub spec: Box<PodSpec>,
}

/// The object the request carries, or a message saying it is missing.
fn object(request: &AdmissionRequest<DynamicObject>) -> Result<&DynamicObject, String> {
    request.object.as_ref().ok_or_else(|| {
        format!(
            "{} {}: the AdmissionReview request has no object",
            request.kind.kind, request.name
        )
    })
}

/// Decodes `field` of an object's data into `T`, naming the exact path that is wrong.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    data: &Value,
    field: &str,
    object: &str,
) -> Result<T, String> {
    let value = data
        .get(field)
        .ok_or_else(|| format!("cannot read {object}: {field} is missing"))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            field.to_owned()
        } else {
            format!("{field}.{path}")
        };
        format!("cannot read {object}: {at}: {}", e.inner())
    })
}

/// The request's pod: `decoded` when the fast path read it already, else from the object.
fn pod_parts<'a>(
    request: &'a AdmissionRequest<DynamicObject>,
    decoded: Option<PodParts<'a>>,
) -> Result<(String, PodParts<'a>), String> {
    if let Some(pod) = decoded {
        let name = validate::object_ref("Pod", request.namespace.as_deref(), pod.meta);
        return Ok((name, pod));
    }
    let obj = object(request)?;
    let name = validate::object_ref("Pod", request.namespace.as_deref(), &obj.metadata);
    let spec = Box::new(decode::<rule_spec::RuleSpec>(&obj.data, "spec", &name)?.into());
    Ok((
        name,
        PodParts {
            meta: &obj.metadata,
            spec,
        },
    ))
}

fn detection_violation(object: &str, error: crate::detect::DetectError) -> Findings {
    Findings {
        violations: vec![Violation {
            rule: "role-annotation",
            message: format!("{object}: {error}"),
        }],
        warnings: Vec::new(),
    }
}

async fn mutate_pod(
    policy: &Policy,
    cluster: &dyn ClusterView,
    request: &AdmissionRequest<DynamicObject>,
    decoded: Option<PodParts<'_>>,
    ctx: &mut Ctx,
) -> Result<Findings, String> {
    let (name, pod) = pod_parts(request, decoded)?;
    let found = match policy
        .detector
        .classify(pod.meta.annotations.as_ref(), &pod.spec)
    {
        Ok(f) => f,
        Err(e) => return Ok(detection_violation(&name, e)),
    };
    // Every container that needs privileges ends up privileged, whether the pod asked for it or
    // the patch adds it: either way Pod Security Admission would refuse the pod.
    let mut findings = cluster_rules::pod_security(cluster, request, &name, &found).await;
    let m = mutate::mutate(&pod.spec, "/spec", &found, &policy.config.mutation);
    // Where a role was assumed, and what the patch cannot fix: the person applying must know.
    findings.warnings.extend(found.notes);
    findings.warnings.extend(m.warnings);
    if m.patch.0.is_empty() {
        return Ok(findings);
    }
    let mut per_rule: BTreeMap<Rule, usize> = BTreeMap::new();
    for c in &m.changes {
        *per_rule.entry(c.rule).or_default() += c.operations;
        ctx.warnings.push(c.message.clone());
    }
    ctx.response = ctx
        .response
        .clone()
        .with_patch(m.patch)
        .map_err(|e| format!("cannot encode the patch for {name}: {e}"))?;
    ctx.summary.verdict = Verdict::Mutated;
    ctx.summary.patch_operations = per_rule.into_iter().collect();
    Ok(findings)
}

async fn validate_pod(
    policy: &Policy,
    cluster: &dyn ClusterView,
    request: &AdmissionRequest<DynamicObject>,
    decoded: Option<PodParts<'_>>,
) -> Result<Findings, String> {
    let (name, pod) = pod_parts(request, decoded)?;
    let found = match policy
        .detector
        .classify(pod.meta.annotations.as_ref(), &pod.spec)
    {
        Ok(f) => f,
        Err(e) => return Ok(detection_violation(&name, e)),
    };
    let mut findings = validate::pod::check(&name, "spec", &pod.spec, &found);
    findings
        .extend(cluster_rules::bare_pod(policy, cluster, request, &name, pod.meta, &found).await?);
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::NoCluster;

    const POD_REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"ci","operation":"CREATE","userInfo":{},"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"e","image":"earthly/earthly"}]}}}}"#;

    fn policy() -> Policy {
        Policy::new(Config::default()).expect("policy")
    }

    fn route(action: Action) -> Route {
        Route { action, mode: None }
    }

    #[tokio::test]
    async fn patch_goes_on_the_wire_as_base64() {
        let r = review_body(
            &policy(),
            &NoCluster,
            route(Action::Mutate),
            POD_REVIEW.as_bytes(),
        )
        .await
        .expect("review");
        let wire: Value = serde_json::from_slice(&r.to_json().expect("json")).expect("json");
        let patch = wire["response"]["patch"].as_str().expect("base64 string");
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("base64");
        let ops: json_patch::Patch = serde_json::from_slice(&decoded).expect("patch");
        assert_eq!(ops.0.len(), 3, "securityContext, volume, mount");
        assert_eq!(wire["response"]["patchType"], "JSONPatch");
        assert_eq!(wire["apiVersion"], ADMISSION_API_VERSION);
        assert_eq!(wire["kind"], "AdmissionReview");
        assert_eq!(wire["response"]["uid"], "u-1");
    }

    #[tokio::test]
    async fn denial_has_no_patch_and_a_forbidden_status() {
        let body = POD_REVIEW.replace(
            r#""metadata":{"name":"p"}"#,
            r#""metadata":{"name":"p","annotations":{"earthly.dev/role":"root"}}"#,
        );
        let r = review_body(
            &policy(),
            &NoCluster,
            route(Action::Mutate),
            body.as_bytes(),
        )
        .await
        .expect("review");
        let resp = r.response();
        assert!(!resp.allowed);
        assert!(resp.patch.is_none());
        assert_eq!(resp.result.code, 403);
        assert_eq!(
            resp.result.message,
            "Pod ci/p: annotation earthly.dev/role: \"root\" is not a role; use one of all-in-one, buildkitd, client, none"
        );
        assert_eq!(r.summary.verdict, Verdict::Denied);
    }

    /// Reviews the test pod with an unreadable role annotation at /validate in `mode`.
    async fn bad_role_at_validate(mode: Mode) -> Reviewed {
        let body = POD_REVIEW.replace(
            r#""metadata":{"name":"p"}"#,
            r#""metadata":{"name":"p","annotations":{"earthly.dev/role":"root"}}"#,
        );
        let route = Route {
            action: Action::Validate,
            mode: Some(mode),
        };
        review_body(&policy(), &NoCluster, route, body.as_bytes())
            .await
            .expect("review")
    }

    #[tokio::test]
    async fn warn_mode_admits_a_violation_with_a_warning() {
        let r = bad_role_at_validate(Mode::Warn).await;
        let resp = r.response();
        assert!(resp.allowed);
        assert!(
            resp.warnings.as_ref().expect("warnings")[0]
                .starts_with("Pod ci/p: annotation earthly.dev/role")
        );
    }

    #[tokio::test]
    async fn audit_mode_records_an_audit_annotation() {
        let r = bad_role_at_validate(Mode::Audit).await;
        let resp = r.response();
        assert!(resp.allowed);
        assert!(resp.warnings.is_none());
        assert!(resp.audit_annotations["role-annotation"].starts_with("Pod ci/p:"));
    }

    #[tokio::test]
    async fn v1beta1_review_is_not_accepted() {
        let body = POD_REVIEW.replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
        let err = review_body(
            &policy(),
            &NoCluster,
            route(Action::Mutate),
            body.as_bytes(),
        )
        .await
        .expect_err("v1beta1");
        assert!(matches!(err, BodyError::NotAReview { .. }));
    }
}
