//! AdmissionReview in, AdmissionReview out: finds the family that judges the request in the
//! registry, decodes the body once into that family's object type, runs it, and applies the
//! policy mode. Shared by the HTTPS server, `check` and `audit`, so all give the same answer.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

mod answer;
mod wire;

use answer::Answer;

pub use crate::config::Mode;
pub use crate::policy::Policy;
pub use crate::rules::registry::Action;
pub use answer::{Reviewed, Summary, Verdict};
pub use wire::{ADMISSION_API_VERSION, BodyError, to_wire_json};

use crate::cluster::ClusterView;
use crate::envelope::{self, Key};
use crate::rules::Context;
use crate::rules::registry::{self, Registration};

/// What the caller asks for: the endpoint's action and, when the path names one, the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub action: Action,
    pub mode: Option<Mode>,
}

/// Decodes and reviews one request body.
pub async fn review_body(
    policy: &Policy,
    cluster: &dyn ClusterView,
    route: Route,
    body: &[u8],
) -> Result<Reviewed, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    // One UTF-8 check of the whole body, then a `&str` decoder that trusts it: decoding from
    // bytes checks every string and key again on its own (a pod review has about 150). A body
    // that is not UTF-8 is reported by the bytes decoder, which says where (into a `Value`, since
    // skipping a string does not check it).
    let Ok(text) = std::str::from_utf8(body) else {
        let error = serde_json::from_slice::<serde_json::Value>(body)
            .err()
            .map_or_else(|| "the body is not UTF-8".to_owned(), |e| e.to_string());
        return Err(BodyError::NotJson(error));
    };
    let peeked = envelope::peek(text);
    let line = registry::find(route.action, peeked.as_ref());
    review_text(policy, cluster, route, text, line, peeked.as_ref()).await
}

/// Reviews `text` with the registry's `line`, found for the key `routed_on`.
async fn review_text(
    policy: &Policy,
    cluster: &dyn ClusterView,
    route: Route,
    text: &str,
    line: Option<&'static Registration>,
    routed_on: Option<&Key<'_>>,
) -> Result<Reviewed, BodyError> {
    let rule = registry::rule(line);
    let (envelope, judge) = match rule.decode(text) {
        Ok(decoded) => decoded,
        Err(error) => {
            if let Ok((envelope, _)) = registry::rule(None).decode(text)
                && wire::check_envelope(&envelope.api_version, &envelope.kind).is_ok()
                && let Some(request) = envelope.request.as_ref()
                && !request.uid.is_empty()
            {
                // Routed on a wrong key (a body in another field order): the object may read
                // fine as the kind it is.
                let key = request.key();
                if let Some(right) = reroute(route.action, routed_on, &key, line) {
                    return Box::pin(review_text(policy, cluster, route, text, right, Some(&key)))
                        .await;
                }
                // A request the line does not judge (a DELETE, say) is admitted whatever its
                // objects hold, as before the operation left the routing key.
                if !line.is_some_and(|l| l.judges(&request.operation)) {
                    return Ok(Answer::new(request).finish());
                }
            }
            return wire::unreadable(text.as_bytes(), &error, rule);
        }
    };
    wire::check_envelope(&envelope.api_version, &envelope.kind)?;
    let request = envelope.request.ok_or(BodyError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(BodyError::NoUid);
    }
    let key = request.key();
    if let Some(right) = reroute(route.action, routed_on, &key, line) {
        return Box::pin(review_text(policy, cluster, route, text, right, Some(&key))).await;
    }
    let mode = route.mode.unwrap_or(policy.config().policy.default_mode);
    let mut answer = Answer::new(&request);
    // The line was found without the operation; a request it does not judge is admitted as is.
    if !line.is_some_and(|l| l.judges(&request.operation)) {
        return Ok(answer.finish());
    }
    let cx = Context { policy, cluster };
    match judge.judge(&cx, &request).await {
        Ok(judgement) => {
            let patched = judgement.mutation.map_or(Ok(()), |m| answer.mutate(m));
            match patched {
                Ok(()) => answer.apply(judgement.findings, mode),
                Err(message) => answer.fail(message),
            }
        }
        Err(message) => answer.fail(message),
    }
    Ok(answer.finish())
}

/// The line to review again with, when the decoded request's `key` is not the one the review was
/// routed on and names another line. The peek reads fields in the apiserver's order; a body
/// written in another order may have been routed on a partial or wrong key.
fn reroute(
    action: Action,
    routed_on: Option<&Key<'_>>,
    key: &Key<'_>,
    line: Option<&'static Registration>,
) -> Option<Option<&'static Registration>> {
    if routed_on == Some(key) {
        return None;
    }
    let right = registry::find(action, Some(key));
    (!same_line(right, line)).then_some(right)
}

fn same_line(a: Option<&Registration>, b: Option<&Registration>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => std::ptr::eq(a, b),
        (a, b) => a.is_none() && b.is_none(),
    }
}

/// Reviews a request that is already decoded (`check` and `audit` build the request the
/// apiserver would send): it goes through the same decoding as a body from the apiserver.
pub async fn review(
    policy: &Policy,
    cluster: &dyn ClusterView,
    route: Route,
    request: &AdmissionRequest<DynamicObject>,
) -> Reviewed {
    let review = AdmissionReview {
        types: kube::core::TypeMeta {
            api_version: ADMISSION_API_VERSION.to_owned(),
            kind: "AdmissionReview".to_owned(),
        },
        request: Some(request.clone()),
        response: None,
    };
    let outcome = match serde_json::to_vec(&review) {
        Ok(body) => review_body(policy, cluster, route, &body).await,
        Err(e) => Err(BodyError::NotJson(e.to_string())),
    };
    outcome.unwrap_or_else(|error| {
        // Only a request built wrong (no uid, say) gets here: answer it as unreadable.
        let mut response = AdmissionResponse::invalid(error.to_string());
        response.uid = request.uid.clone();
        Reviewed::unreadable(response, request.uid.clone())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::cluster::NoCluster;
    use crate::config::Config;

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

    /// A Scale review whose object reads as a Scale but not as a workload (its `metadata.name`
    /// is a map, which the Scale family never reads), in the apiserver's order and with
    /// `subResource` before `resource`: the peek then misses the subresource and routes to the
    /// workloads, whose decode fails. The review must route again on the decoded key and give
    /// the same answer, not report the object unreadable.
    #[tokio::test]
    async fn a_misrouted_body_whose_decode_fails_is_routed_again() {
        let head = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-2","kind":{"group":"autoscaling","version":"v1","kind":"Scale"},"#;
        let resource = r#""resource":{"group":"apps","version":"v1","resource":"deployments"},"#;
        let sub = r#""subResource":"scale","#;
        let tail = r#""name":"bk","namespace":"ci","operation":"UPDATE","userInfo":{},"object":{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":{"x":1}},"spec":{"replicas":2}},"oldObject":{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"bk"},"spec":{"replicas":1}}}}"#;
        let mut answers = Vec::new();
        for body in [
            format!("{head}{resource}{sub}{tail}"),
            format!("{head}{sub}{resource}{tail}"),
        ] {
            let r = review_body(
                &policy(),
                &NoCluster,
                route(Action::Validate),
                body.as_bytes(),
            )
            .await
            .expect("review");
            answers.push(String::from_utf8(r.to_json().expect("json")).expect("utf-8"));
        }
        assert!(
            answers[0].contains("the lookup of Deployment ci/bk failed"),
            "{}",
            answers[0]
        );
        assert_eq!(answers[1], answers[0]);
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
