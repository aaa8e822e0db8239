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

use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::admission::Operation;
use kube::core::{GroupVersionKind, GroupVersionResource};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
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
    pub fn key(&self) -> Key {
        Key {
            group: self.resource.group.clone(),
            resource: self.resource.resource.clone(),
            sub_resource: self.sub_resource.clone(),
        }
    }

    /// Whether `key` is this request's routing key; compared in place, since every request is
    /// checked against the key the peek read.
    pub fn is_routed_on(&self, key: &Key) -> bool {
        key.group == self.resource.group
            && key.resource == self.resource.resource
            && key.sub_resource == self.sub_resource
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
/// checked after the full decode: it comes late in the apiserver's order, and reading up to it
/// doubled what the peek parses (callgrind: ~9,600 instructions per pod review).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub group: String,
    pub resource: String,
    pub sub_resource: Option<String>,
}

/// Reads the routing key of a review body without decoding the rest. `None` when the body does
/// not carry one that reads; the full decode then reports what is wrong.
pub fn peek(text: &str) -> Option<Key> {
    let mut found = Peeked::default();
    let mut de = serde_json::Deserializer::from_str(text);
    // Stops with an error once the key is read; what was found is in `found` either way.
    let _ = (&mut de).deserialize_map(ReviewVisitor(&mut found));
    Some(Key {
        group: found.group?,
        resource: found.resource?,
        sub_resource: found.sub_resource,
    })
}

#[derive(Default)]
struct Peeked {
    group: Option<String>,
    resource: Option<String>,
    sub_resource: Option<String>,
}

/// The marker error that ends a peek early.
const PEEKED: &str = "peeked";

/// Keys are read as identifiers: no allocation, and escaped keys read too.
#[derive(Deserialize, PartialEq, Eq)]
#[serde(field_identifier, rename_all = "camelCase")]
enum ReviewField {
    Request,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum RequestField {
    Uid,
    Kind,
    Resource,
    SubResource,
    #[serde(other)]
    Other,
}

struct ReviewVisitor<'p>(&'p mut Peeked);

impl<'de> Visitor<'de> for ReviewVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AdmissionReview")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<ReviewField>()? {
            if key == ReviewField::Request {
                return map.next_value_seed(RequestSeed(self.0));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

struct RequestSeed<'p>(&'p mut Peeked);

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

#[derive(Deserialize)]
struct ResourceKey {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resource: String,
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AdmissionRequest")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<RequestField>()? {
            match key {
                RequestField::Resource => {
                    let r: ResourceKey = map.next_value()?;
                    self.0.group = Some(r.group);
                    self.0.resource = Some(r.resource);
                }
                RequestField::SubResource => {
                    self.0.sub_resource = map.next_value()?;
                    return Err(de::Error::custom(PEEKED));
                }
                // The apiserver writes `subResource`, when there is one, right after
                // `resource`: any later field ends the key (another order is caught by the
                // caller's check after the full decode).
                RequestField::Other if self.0.resource.is_some() => {
                    return Err(de::Error::custom(PEEKED));
                }
                RequestField::Uid | RequestField::Kind | RequestField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
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
        assert_eq!((key.group.as_str(), key.resource.as_str()), ("", "pods"));
        let scale = POD.replace(
            r#""resource":"pods"},"#,
            r#""resource":"deployments"},"subResource":"scale","#,
        );
        assert_eq!(
            peek(&scale).expect("key").sub_resource.as_deref(),
            Some("scale")
        );
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
