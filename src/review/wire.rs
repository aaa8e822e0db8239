//! The wire: what is not a review at all (an HTTP 400), what is a review that cannot be read (an
//! answer with the request's uid), and the answer's encoding.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, AdmissionReview};
use serde::Deserialize;
use serde_json::Value;

use super::answer::{Answer, Reviewed};
use crate::envelope::Review;
use crate::rules::object_ref;
use crate::rules::registry::Dispatch;

/// The only AdmissionReview version the webhook speaks (the chart registers just `v1`).
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";
pub(super) const ADMISSION_KIND: &str = "AdmissionReview";

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

pub(super) fn check_envelope(api_version: &str, kind: &str) -> Result<(), BodyError> {
    if api_version == ADMISSION_API_VERSION && kind == ADMISSION_KIND {
        Ok(())
    } else {
        Err(BodyError::NotAReview {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        })
    }
}

/// A body that failed to decode as `rule`'s review: a 400 unless it is a review with a uid to
/// answer to; then an answer that says which field of the object cannot be read.
pub(super) fn unreadable(
    body: &[u8],
    error: &serde_json::Error,
    rule: &dyn Dispatch,
) -> Result<Reviewed, BodyError> {
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
    // The envelope reads with any object: say which field of the object does not.
    if let Ok(review) = serde_json::from_slice::<Review<Value>>(body)
        && let (envelope, Some(object), _) = review.split()
        && let Some(request) = envelope.request
    {
        let meta = object
            .get("metadata")
            .and_then(|m| serde_json::from_value(m.clone()).ok())
            .unwrap_or_default();
        let name = object_ref(request.kind(), request.namespace.as_deref(), &meta);
        if let Some(why) = rule.explain(object) {
            let mut answer = Answer::new(&request);
            answer.fail(format!("cannot read {name}: {why}"));
            return Ok(answer.finish());
        }
    }
    let mut response = AdmissionResponse::invalid(format!("cannot read AdmissionReview: {error}"));
    response.uid = uid.clone();
    Ok(Reviewed::unreadable(response, uid))
}
