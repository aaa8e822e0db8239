//! Services: the live buildkitd pods a Service selects are listed with its selector, classified
//! by the detector and grouped into instances by their controller ([`super::fleet`]). In `single`
//! mode it must select at most one instance; in `sticky` mode it must keep each client on one of
//! them, and they must share one TLS configuration.

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::Operation;
use serde::Deserialize;

use super::buildkitd::pod_ref;
use super::fleet::{self, Tls};
use super::lookups::{Lookups, Stop, nothing};
use super::sticky::{pod_selector, stickiness, sticky_prefix};
use super::{Context, Findings, Input, Judgement, Rule, RuleId, Violation, object_ref};
use crate::config::Instances;
use crate::detect::Family;

/// Services being created or updated.
pub struct Services;

/// A Service as the rule reads it.
#[derive(Deserialize)]
pub struct Object {
    #[serde(default)]
    metadata: ObjectMeta,
    spec: Option<ServiceSpec>,
}

impl Object {
    fn service(&self, subject: &str) -> Result<Service, String> {
        let spec = self
            .spec
            .clone()
            .ok_or_else(|| format!("cannot read {subject}: spec is missing"))?;
        Ok(Service {
            metadata: self.metadata.clone(),
            spec: Some(spec),
            status: None,
        })
    }
}

impl Rule for Services {
    type Object = Object;

    async fn review(&self, cx: &Context<'_>, input: Input<'_, Object>) -> Result<Judgement, Stop> {
        let b = &cx.policy.config().buildkitd;
        let obj = input.object()?;
        if obj.metadata.deletion_timestamp.is_some() {
            return nothing();
        }
        let subject = object_ref("Service", input.request.namespace.as_deref(), &obj.metadata);
        let new = obj.service(&subject)?;
        if input.request.operation == Operation::Update
            && let Some(old) = input.old_object
            && let Ok(old) = old.service(&subject)
            && same_shape(&old, &new)
        {
            return nothing();
        }
        // A Service that routes to no pods cannot front buildkitd: no lookup.
        let Some(selector) = pod_selector(&new) else {
            return nothing();
        };
        let lookups = Lookups::new(cx, &subject);
        let detector = cx.policy.detector();
        let pods = lookups.fleet(detector, input.namespace(), selector).await?;
        let instances = fleet::instances(detector, &pods);
        let daemon = instances.first().map_or(Family::Earthly, |i| i.family);
        let mut violations = Vec::new();
        match b.instances {
            Instances::Single => {
                violations.extend(fleet::check_service(&subject, &instances, daemon))
            }
            Instances::Sticky => {
                let buildkitd_pods: Vec<String> = pods.iter().map(pod_ref).collect();
                let min = b.min_sticky_timeout_seconds;
                violations.extend(check(&subject, &new, &buildkitd_pods, daemon, min));
                let tls: Vec<(&str, &Tls)> = instances
                    .iter()
                    .map(|i| (i.name.as_str(), &i.tls))
                    .collect();
                violations.extend(fleet::check_tls(&subject, &tls, daemon));
            }
        }
        Ok(Findings {
            violations,
            warnings: Vec::new(),
        }
        .into())
    }
}

/// Whether an update leaves everything these rules read as it was.
pub fn same_shape(old: &Service, new: &Service) -> bool {
    let shape = |s: &Service| {
        s.spec.as_ref().map(|s| {
            (
                s.selector.clone(),
                s.type_.clone(),
                s.cluster_ip.clone(),
                s.session_affinity.clone(),
                s.session_affinity_config.clone(),
            )
        })
    };
    shape(old) == shape(new)
}

/// Sticky mode: a Service that selects buildkitd pods must keep each client on one of them.
/// `subject` names the Service; `buildkitd_pods` names the live buildkitd pods it selects.
pub fn check(
    subject: &str,
    service: &Service,
    buildkitd_pods: &[String],
    daemon: Family,
    min_timeout_seconds: i32,
) -> Option<Violation> {
    let first = buildkitd_pods.first()?;
    let why = stickiness(service, min_timeout_seconds).err()?;
    let pods = match buildkitd_pods.len() {
        1 => first.clone(),
        // Lookups stop at the first few pods: the count is a lower bound.
        2 => format!("{first} and at least 1 more pod"),
        n => format!("{first} and at least {} more pods", n - 1),
    };
    Some(Violation {
        rule: RuleId::BuildkitdServiceNotSticky,
        message: format!(
            "{}{subject} selects buildkitd {pods} but {}. {}, or change its selector \
             so that it selects no buildkitd pods.",
            sticky_prefix(daemon),
            why.problem(),
            why.remedy_for_service(min_timeout_seconds),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{labels, service};
    use serde_json::json;

    #[test]
    fn rejects_plain_service_in_front_of_buildkitd_pods() {
        let s = service(json!({"selector": {"app": "bk"}}));
        let v = check(
            "Service ci/bk",
            &s,
            &["Pod ci/bk-0".to_owned(), "Pod ci/bk-1".to_owned()],
            Family::Earthly,
            600,
        )
        .expect("violation");
        assert_eq!(v.rule, RuleId::BuildkitdServiceNotSticky);
        assert_eq!(
            v.message,
            "earthly/buildkitd multi-instance mode needs sticky sessions: Service ci/bk selects \
             buildkitd Pod ci/bk-0 and at least 1 more pod but has sessionAffinity: None. Set \
             sessionAffinity: ClientIP with sessionAffinityConfig.clientIP.timeoutSeconds of at \
             least 600, or change its selector so that it selects no buildkitd pods."
        );
    }

    #[test]
    fn rejects_headless_service_in_front_of_buildkitd_pods() {
        let s = service(json!({"selector": {"app": "bk"}, "clusterIP": "None"}));
        let v = check(
            "Service ci/bk",
            &s,
            &["Pod ci/bk-0".to_owned()],
            Family::Earthly,
            600,
        )
        .expect("violation");
        assert_eq!(
            v.message,
            "earthly/buildkitd multi-instance mode needs sticky sessions: Service ci/bk selects \
             buildkitd Pod ci/bk-0 but is headless (clusterIP: None), so DNS spreads clients over \
             every instance. Use a Service with a cluster IP and sessionAffinity: ClientIP with \
             sessionAffinityConfig.clientIP.timeoutSeconds of at least 600, or change its \
             selector so that it selects no buildkitd pods."
        );
    }

    #[test]
    fn accepts_plain_service_without_buildkitd_pods() {
        let s = service(json!({"selector": {"app": "web"}}));
        assert_eq!(check("Service ci/bk", &s, &[], Family::Earthly, 600), None);
    }

    #[test]
    fn accepts_sticky_service_in_front_of_buildkitd_pods() {
        let s = service(
            json!({"selector": {"app": "bk"}, "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 3600}}}),
        );
        assert_eq!(
            check(
                "Service ci/bk",
                &s,
                &["Pod ci/bk-0".to_owned()],
                Family::Earthly,
                600
            ),
            None
        );
    }

    #[test]
    fn label_only_update_keeps_the_shape() {
        let a = service(json!({"selector": {"app": "bk"}}));
        let mut b = a.clone();
        b.metadata.labels = Some(labels(&[("x", "y")]));
        assert!(same_shape(&a, &b));
        let c = service(json!({"selector": {"app": "bk"}, "sessionAffinity": "ClientIP"}));
        assert!(!same_shape(&a, &c));
    }
}
