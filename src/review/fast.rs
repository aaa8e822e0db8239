//! The fast path for the request the webhook sees most: a Pod CREATE. It decodes the body in one
//! pass straight into the typed pod the rules read, where the general path builds a
//! `DynamicObject` (its `#[serde(flatten)]` fields buffer the whole object, then a
//! `serde_json::Value`, then the spec is decoded again from that Value): 3.5 times the work.
//!
//! It is an optimisation only: whenever anything is unusual (not a Pod CREATE, a field of the
//! wrong type, a spec missing, an `oldObject` or `response` present, a body not starting with
//! `{` or not UTF-8), it answers `None` and the general path reviews the body, so every error
//! message comes from one place. When it answers, it answers exactly as the general path would,
//! through the same functions. The one difference is what it does not read:
//! `metadata.managedFields`, the pod's `status` and `request.options` are skipped unparsed (the
//! rules never look at them; the apiserver wrote them), so a malformed value there is not
//! reported.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::rule_spec::RuleSpec;
use super::{PodParts, Reviewed, Route, Target};
use crate::cluster::ClusterView;

/// The envelope, as the general path reads it (`AdmissionReview`'s type fields are required).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    api_version: String,
    kind: String,
    #[serde(default)]
    request: Option<Request>,
    #[serde(default)]
    response: Option<IgnoredAny>,
}

/// `AdmissionRequest` field for field, in its order and with its attributes (so that even a
/// request written as an array decodes alike), but with a typed pod as the object.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: UserInfo,
    #[serde(default, deserialize_with = "map_only")]
    object: Option<Pod>,
    #[serde(default)]
    old_object: Option<IgnoredAny>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default, rename = "options")]
    _options: Option<IgnoredAny>,
}

/// A pod as the rules read it. `DynamicObject` defaults missing metadata; so does this.
#[derive(Deserialize)]
struct Pod {
    #[serde(default)]
    metadata: Meta,
    spec: Option<RuleSpec>,
}

/// `ObjectMeta` without `managedFields`, which is most of a pod's metadata and read by no rule.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

impl From<Meta> for ObjectMeta {
    fn from(m: Meta) -> Self {
        ObjectMeta {
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: m.generate_name,
            generation: m.generation,
            labels: m.labels,
            managed_fields: None,
            name: m.name,
            namespace: m.namespace,
            owner_references: m.owner_references,
            resource_version: m.resource_version,
            self_link: m.self_link,
            uid: m.uid,
        }
    }
}

/// Decodes an optional object that must be a JSON object, as `DynamicObject` (whose flattened
/// fields accept nothing else) does; a derived struct would also take an array.
fn map_only<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct OptionVisitor<T>(PhantomData<T>);
    struct MapVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for OptionVisitor<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(MapVisitor(PhantomData)).map(Some)
        }
    }

    impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }

    deserializer.deserialize_option(OptionVisitor(PhantomData))
}

/// Reviews `body` if it is a plain Pod request the fast path handles; `None` otherwise.
pub(super) async fn review(
    policy: &super::Policy,
    cluster: &dyn ClusterView,
    route: Route,
    body: &[u8],
) -> Option<Reviewed> {
    let (decoded, spec) = decode(route, body)?;
    let parts = PodParts {
        meta: &decoded.meta,
        spec,
    };
    Some(super::review_decoded(policy, cluster, route, &decoded.request, Some(parts)).await)
}

/// The request and the pod's metadata, as the rules read them.
struct Decoded {
    request: AdmissionRequest<DynamicObject>,
    meta: ObjectMeta,
}

/// Decodes `body` if the fast path handles it. Not async, and its answer boxed: the review
/// future then holds two pointers instead of kilobytes of decoded request that every poll
/// layer would copy.
fn decode(route: Route, body: &[u8]) -> Option<(Box<Decoded>, Box<PodSpec>)> {
    // The general path's envelope has flattened fields and accepts only a JSON object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    // One UTF-8 check of the whole body, then a `&str` decoder that trusts it: decoding from
    // bytes checks every string and key again on its own (a pod review has about 150), which
    // cost more than the check of the whole body. A body that is not UTF-8 goes to the general
    // path, which reports where.
    let text = std::str::from_utf8(body).ok()?;
    let review: Review = serde_json::from_str(text).ok()?;
    super::check_envelope(&review.api_version, &review.kind).ok()?;
    let r = review.request?;
    if r.uid.is_empty()
        || review.response.is_some()
        || r.old_object.is_some()
        || r.operation != Operation::Create
    {
        return None;
    }
    let pod = r.object?;
    let spec = pod.spec?;
    let request = AdmissionRequest::<DynamicObject> {
        types: TypeMeta {
            api_version: review.api_version,
            kind: review.kind,
        },
        uid: r.uid,
        kind: r.kind,
        resource: r.resource,
        sub_resource: r.sub_resource,
        request_kind: r.request_kind,
        request_resource: r.request_resource,
        request_sub_resource: r.request_sub_resource,
        name: r.name,
        namespace: r.namespace,
        operation: r.operation,
        user_info: r.user_info,
        // The pod travels beside the request, decoded.
        object: None,
        old_object: None,
        dry_run: r.dry_run,
        // Read by no rule; skipped unparsed.
        options: None,
    };
    if !matches!(
        super::target(route.action, &request),
        Target::MutatePod | Target::ValidatePod
    ) {
        return None;
    }
    let decoded = Box::new(Decoded {
        request,
        meta: ObjectMeta::from(pod.metadata),
    });
    Some((decoded, Box::new(spec.into())))
}
