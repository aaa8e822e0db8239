//! The one dispatch table: which family judges what the apiserver sends. The chart's webhook
//! configurations register exactly these (group, resource, subresource, operations), which
//! `tests/chart.rs` checks against a real `helm template`.

use kube::core::admission::Operation;
use serde::de::IgnoredAny;
use strum::{EnumIter, IntoStaticStr};

use super::{Context, Input, Judgement, Rule, Stop};
use super::{hpa, jobs, pod, replication, scale, service, workload};
use crate::envelope::{Key, Request, Review};

/// The two webhook endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, IntoStaticStr, EnumIter)]
#[strum(serialize_all = "lowercase")]
pub enum Action {
    Mutate,
    Validate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One line of the table.
pub struct Registration {
    pub action: Action,
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub sub_resource: Option<&'static str>,
    pub operations: &'static [Operation],
    pub rule: &'static dyn Dispatch,
}

const WRITES: &[Operation] = &[Operation::Create, Operation::Update];

/// Everything the webhook judges.
pub static REGISTRY: &[Registration] = &[
    Registration {
        action: Action::Mutate,
        group: "",
        resources: &["pods"],
        sub_resource: None,
        operations: &[Operation::Create],
        rule: &pod::Mutate,
    },
    Registration {
        action: Action::Validate,
        group: "",
        resources: &["pods"],
        sub_resource: None,
        operations: WRITES,
        rule: &pod::Validate,
    },
    Registration {
        action: Action::Validate,
        group: "apps",
        resources: &["deployments", "statefulsets", "replicasets", "daemonsets"],
        sub_resource: None,
        operations: WRITES,
        rule: &workload::Workloads,
    },
    Registration {
        action: Action::Validate,
        group: "",
        resources: &["replicationcontrollers"],
        sub_resource: None,
        operations: WRITES,
        rule: &replication::ReplicationControllers,
    },
    Registration {
        action: Action::Validate,
        group: "batch",
        resources: &["jobs"],
        sub_resource: None,
        operations: WRITES,
        rule: &jobs::Jobs,
    },
    Registration {
        action: Action::Validate,
        group: "batch",
        resources: &["cronjobs"],
        sub_resource: None,
        operations: WRITES,
        rule: &jobs::CronJobs,
    },
    Registration {
        action: Action::Validate,
        group: "apps",
        resources: &["deployments", "statefulsets", "replicasets"],
        sub_resource: Some("scale"),
        operations: &[Operation::Update],
        rule: &scale::Scale,
    },
    Registration {
        action: Action::Validate,
        group: "autoscaling",
        resources: &["horizontalpodautoscalers"],
        sub_resource: None,
        operations: WRITES,
        rule: &hpa::Autoscalers,
    },
    Registration {
        action: Action::Validate,
        group: "",
        resources: &["services"],
        sub_resource: None,
        operations: WRITES,
        rule: &service::Services,
    },
];

impl Registration {
    fn matches(&self, action: Action, key: &Key<'_>) -> bool {
        self.action == action
            && self.group == key.group
            && self.resources.contains(&key.resource)
            && self.sub_resource == key.sub_resource
    }

    /// Whether the line judges `operation` (checked after the decode: see [`Key`]).
    pub fn judges(&self, operation: &Operation) -> bool {
        self.operations.contains(operation)
    }
}

/// The line for `key` at `action`, if any; whether it judges the request's operation is
/// [`Registration::judges`].
pub fn find(action: Action, key: Option<&Key<'_>>) -> Option<&'static Registration> {
    key.and_then(|key| REGISTRY.iter().find(|r| r.matches(action, key)))
}

/// The family of a line; requests no line judges are read for their envelope and admitted.
pub fn rule(registration: Option<&'static Registration>) -> &'static dyn Dispatch {
    registration.map_or(&Unjudged, |r| r.rule)
}

/// A decoded request, ready to be judged by its family.
#[async_trait::async_trait]
pub trait Judge: Send + Sync {
    async fn judge(
        &self,
        cx: &Context<'_>,
        request: &Request<IgnoredAny>,
    ) -> Result<Judgement, String>;
}

/// A [`Rule`] with its object type erased, so the table can hold every family.
pub trait Dispatch: Sync {
    /// Decodes a review body into this family's object type.
    fn decode(
        &'static self,
        text: &str,
    ) -> Result<(Review<IgnoredAny>, Box<dyn Judge + '_>), serde_json::Error>;

    /// Why `object` does not read as this family's object: the path of the field and the error.
    fn explain(&self, object: serde_json::Value) -> Option<String>;
}

struct Decoded<R: Rule> {
    rule: &'static R,
    object: Option<R::Object>,
    old_object: Option<R::Object>,
}

#[async_trait::async_trait]
impl<R: Rule> Judge for Decoded<R> {
    async fn judge(
        &self,
        cx: &Context<'_>,
        request: &Request<IgnoredAny>,
    ) -> Result<Judgement, String> {
        let input = Input {
            request,
            object: self.object.as_ref(),
            old_object: self.old_object.as_ref(),
        };
        super::lookups::finish(self.rule.review(cx, input).await)
    }
}

impl<R: Rule> Dispatch for R {
    fn decode(
        &'static self,
        text: &str,
    ) -> Result<(Review<IgnoredAny>, Box<dyn Judge + '_>), serde_json::Error> {
        let review: Review<R::Object> = serde_json::from_str(text)?;
        let (envelope, object, old_object) = review.split();
        let decoded = Decoded {
            rule: self,
            object,
            old_object,
        };
        Ok((envelope, Box::new(decoded)))
    }

    fn explain(&self, object: serde_json::Value) -> Option<String> {
        let error = serde_path_to_error::deserialize::<_, R::Object>(object).err()?;
        let path = error.path().to_string();
        Some(if path == "." {
            error.inner().to_string()
        } else {
            format!("{path}: {}", error.inner())
        })
    }
}

/// Requests no family judges: read for their envelope, admitted unchanged.
struct Unjudged;

impl Rule for Unjudged {
    type Object = IgnoredAny;

    async fn review(&self, _: &Context<'_>, _: Input<'_, IgnoredAny>) -> Result<Judgement, Stop> {
        Ok(Judgement::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(
        group: &'a str,
        resource: &'a str,
        sub_resource: Option<&'a str>,
        op: Operation,
    ) -> (Key<'a>, Operation) {
        let key = Key {
            group,
            resource,
            sub_resource,
        };
        (key, op)
    }

    fn judged(action: Action, (key, op): &(Key<'_>, Operation)) -> bool {
        find(action, Some(key)).is_some_and(|r| r.judges(op))
    }

    #[test]
    fn pods_are_mutated_on_create_only() {
        assert!(judged(
            Action::Mutate,
            &key("", "pods", None, Operation::Create)
        ));
        assert!(!judged(
            Action::Mutate,
            &key("", "pods", None, Operation::Update)
        ));
        assert!(judged(
            Action::Validate,
            &key("", "pods", None, Operation::Update)
        ));
    }

    #[test]
    fn subresources_are_their_own_entries() {
        assert!(judged(
            Action::Validate,
            &key("apps", "deployments", Some("scale"), Operation::Update)
        ));
        assert!(!judged(
            Action::Validate,
            &key("apps", "deployments", Some("status"), Operation::Update)
        ));
        assert!(!judged(
            Action::Validate,
            &key("", "pods", Some("ephemeralcontainers"), Operation::Update)
        ));
        assert!(!judged(
            Action::Validate,
            &key("apps", "daemonsets", Some("scale"), Operation::Update)
        ));
    }

    #[test]
    fn deletes_and_unknown_resources_are_not_judged() {
        assert!(!judged(
            Action::Validate,
            &key("apps", "deployments", None, Operation::Delete)
        ));
        assert!(!judged(
            Action::Validate,
            &key("", "configmaps", None, Operation::Create)
        ));
        assert!(find(Action::Validate, None).is_none());
    }
}
