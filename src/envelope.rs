//! The AdmissionReview envelope, generic over the object inside (as kube-core's
//! `AdmissionRequest<T>`): each rule family names the type it reads, and the body is decoded
//! once, straight into it. No `DynamicObject`, no `serde_json::Value` in between: a pod review is
//! decoded in one pass into the few fields the rules read (docs/benchmarks.md has the numbers
//! that made this the design).
//!
//! Which type to decode into depends on the request's resource and subresource, which sit in the
//! same body. [`peek`] reads just those: the apiserver writes them before `userInfo` and the
//! object, so the peek stops after a few hundred bytes. It is only a routing hint; the full
//! decode carries the same fields and the caller checks they agree.

use std::fmt;
use std::marker::PhantomData;
use std::sync::LazyLock;

use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::admission::Operation;
use kube::core::{GroupVersionKind, GroupVersionResource};
use memchr::memmem::Finder;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// `admission.k8s.io/v1` AdmissionReview with an object of type `O`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound = "O: Deserialize<'de>")]
pub struct Review<O> {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub request: Option<Request<O>>,
    /// A review that already carries a response is still answered; its response is ignored.
    #[serde(default, rename = "response")]
    _response: Option<IgnoredAny>,
}

/// `AdmissionRequest`, field for field (kube-core's, in its order and with its defaults), with
/// `object` and `oldObject` of type `O`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound = "O: Deserialize<'de>")]
pub struct Request<O> {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    pub request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    pub request_sub_resource: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    // Read by no rule, but required and typed as the apiserver sends it.
    #[serde(rename = "userInfo")]
    _user_info: UserInfo,
    #[serde(default, deserialize_with = "map_only")]
    pub object: Option<O>,
    #[serde(default, deserialize_with = "map_only")]
    pub old_object: Option<O>,
    #[serde(default)]
    pub dry_run: bool,
    // Read by no rule; skipped unparsed.
    #[serde(default, rename = "options")]
    _options: Option<IgnoredAny>,
}

impl<O> Review<O> {
    /// The envelope without its objects, and the objects.
    pub fn split(self) -> (Review<IgnoredAny>, Option<O>, Option<O>) {
        let Some(r) = self.request else {
            let envelope = Review {
                api_version: self.api_version,
                kind: self.kind,
                request: None,
                _response: None,
            };
            return (envelope, None, None);
        };
        let request = Request {
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
            _user_info: r._user_info,
            object: None,
            old_object: None,
            dry_run: r.dry_run,
            _options: None,
        };
        let envelope = Review {
            api_version: self.api_version,
            kind: self.kind,
            request: Some(request),
            _response: None,
        };
        (envelope, r.object, r.old_object)
    }
}

impl<O> Request<O> {
    /// What the registry routes on.
    pub fn key(&self) -> Key<'_> {
        Key {
            group: &self.resource.group,
            resource: &self.resource.resource,
            sub_resource: self.sub_resource.as_deref(),
        }
    }

    /// `kind` as the request names it (`Pod`, `Scale`).
    pub fn kind(&self) -> &str {
        &self.kind.kind
    }
}

/// Decodes an optional object that must be a JSON object (a kube object always is); a derived
/// struct would also take an array.
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

/// What a request is routed on: the resource written and the subresource. The operation is
/// checked after the full decode: it comes late in the apiserver's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    pub group: &'a str,
    pub resource: &'a str,
    pub sub_resource: Option<&'a str>,
}

/// Reads the routing key of a review body without decoding the rest. `None` when no key reads
/// where the apiserver puts it; the full decode then finds the key and the review is routed on
/// it (a body in another field order is routed the same way, one decode later).
///
/// Hand-written on purpose, and only a hint: the full decode carries the same fields and the
/// caller checks they agree. A serde visitor over the envelope that stopped right after
/// `resource` still cost about 6,200 instructions per pod review, 4 % of the review
/// (callgrind, `examples/profile_review`): serde_json's map machinery for the head, two owned
/// strings and the error that ends the parse early. This finds the key with memchr's SIMD
/// search and parses just the `resource` object and the `subResource` string that the
/// apiserver writes after it, borrowing both (docs/benchmarks.md has the count).
///
/// `"resource":` can only match a key: inside a JSON string its quotes would be escaped. In the
/// apiserver's order the first such key is the request's own (`uid` and `kind` come before it,
/// and a GroupVersionKind has no `resource`); in any other order a wrong match routes to a line
/// whose decode then disagrees with the request, and the caller routes again.
pub fn peek(text: &str) -> Option<Key<'_>> {
    const RESOURCE: &[u8] = b"\"resource\":";
    const SUB_RESOURCE: &str = ",\"subResource\":";
    // Built once: building the searcher cost more than the search (about 560 instructions).
    static FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(RESOURCE));
    let at = FINDER.find(text.as_bytes())? + RESOURCE.len();
    let rest = text.get(at..)?;
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<ResourceKey<'_>>();
    let resource = stream.next()?.ok()?;
    let after = rest.get(stream.byte_offset()..)?;
    let sub_resource = match after.strip_prefix(SUB_RESOURCE) {
        Some(sub) => Some(
            serde_json::Deserializer::from_str(sub)
                .into_iter::<&str>()
                .next()?
                .ok()?,
        ),
        None => None,
    };
    Some(Key {
        group: resource.group,
        resource: resource.resource,
        sub_resource,
    })
}

/// A GroupVersionResource, borrowed from the body: an escaped string does not borrow and fails
/// the peek, which the full decode then settles.
#[derive(Deserialize)]
struct ResourceKey<'a> {
    #[serde(default, borrow)]
    group: &'a str,
    #[serde(borrow)]
    resource: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","userInfo":{},"object":{"metadata":{"name":"p"}}}}"#;

    #[test]
    fn peek_reads_the_routing_key() {
        let key = peek(POD).expect("key");
        assert_eq!(key.group, "");
        assert_eq!(key.resource, "pods");
        assert_eq!(key.sub_resource, None);
    }

    #[test]
    fn peek_stops_before_the_object() {
        // The object is not even JSON: the peek never gets there.
        let cut = POD.replace(r#"{"metadata":{"name":"p"}}"#, "!");
        assert_eq!(peek(&cut), peek(POD));
    }

    #[test]
    fn peek_stops_at_the_field_after_the_resource() {
        // Everything after `resource` is unreadable: the key is read before it.
        let cut = POD.replace(r#""operation":"CREATE""#, r#""operation":!"#);
        let key = peek(&cut).expect("key");
        assert_eq!((key.group, key.resource), ("", "pods"));
        let scale = POD.replace(
            r#""resource":"pods"},"#,
            r#""resource":"deployments"},"subResource":"scale","#,
        );
        assert_eq!(peek(&scale).expect("key").sub_resource, Some("scale"));
    }

    #[test]
    fn peek_is_a_hint_the_decode_settles() {
        // The object first: the first `"resource":` key is the object's, and the peek reads
        // it. The caller sees the decoded request disagree and routes again.
        let hpa_first = r#"{"request":{"object":{"spec":{"metrics":[{"resource":{"group":"x","resource":"cpu"}}]}},"resource":{"group":"","version":"v1","resource":"pods"}}}"#;
        let key = peek(hpa_first).expect("a key");
        assert_eq!((key.group, key.resource), ("x", "cpu"));
        // A `"resource":` inside a string is escaped, so never matches.
        let quoted = POD.replace(r#""uid":"u""#, r#""uid":"\"resource\":{}""#);
        assert_eq!(peek(&quoted), peek(POD));
        // Escaped names do not borrow: no hint, the full decode routes.
        let escaped = POD.replace(r#""resource":"pods""#, r#""resource":"p\u006fds""#);
        assert_eq!(peek(&escaped), None);
    }

    #[test]
    fn peek_of_a_body_without_a_request_is_none() {
        assert_eq!(peek(r#"{"apiVersion":"v1"}"#), None);
        assert_eq!(peek("not json"), None);
    }

    #[test]
    fn object_must_be_a_json_object() {
        let arr = POD.replace(r#"{"metadata":{"name":"p"}}"#, "[1]");
        assert!(serde_json::from_str::<Review<IgnoredAny>>(&arr).is_err());
        let null = POD.replace(r#"{"metadata":{"name":"p"}}"#, "null");
        let r: Review<IgnoredAny> = serde_json::from_str(&null).expect("null object");
        assert!(r.request.expect("request").object.is_none());
    }
}
