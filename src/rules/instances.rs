//! Objects that ask for several buildkitd instances behind one address: how such a demand is
//! described, and how each `buildkitd.instances` mode judges it. `single` always refuses it;
//! `sticky` looks up the Services in front of the instances and refuses each that does not pin
//! clients. The one place that decides between the two modes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};

use super::footguns;
use super::lookups::{Lookups, Stop, nothing};
use super::sticky::{
    NotSticky, STICKY_WAY_OUT, fronting, service_ref, single_prefix, stickiness, sticky_prefix,
};
use super::{Context, Findings, RuleId, Violation, Warning, role_annotation};
use crate::config::Instances;
use crate::detect::{Family, Found};

/// An object that asks for more than one buildkitd instance behind one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// Audit annotation key in single-instance mode.
    pub rule: RuleId,
    /// What was found, as a sentence without its full stop:
    /// `Deployment earthly-ci/earthly-buildkitd asks for 3 replicas`.
    pub found: String,
    /// The way back to one instance, capitalised: `Set replicas: 1`.
    pub fix: String,
    /// Whose buildkitd it is, as messages name it (`earthly/buildkitd`, `earthbuild/buildkitd`).
    pub daemon: Family,
}

impl Demand {
    /// Single-instance mode: the demand itself is the violation.
    pub fn single(&self) -> Violation {
        Violation {
            rule: self.rule,
            message: format!(
                "{}{}. {}, or {STICKY_WAY_OUT}.",
                single_prefix(self.daemon),
                self.found,
                self.fix
            ),
        }
    }

    /// [`Demand::single`], as findings.
    pub fn single_findings(&self) -> Findings {
        Findings {
            violations: vec![self.single()],
            warnings: Vec::new(),
        }
    }

    /// Sticky mode: one violation per Service among `fronting` (the Services that select the
    /// instances) that does not keep a client on one instance.
    pub fn sticky<'a>(
        &self,
        fronting: impl IntoIterator<Item = &'a Service>,
        min_timeout_seconds: i32,
    ) -> Findings {
        let violations = fronting
            .into_iter()
            .filter_map(|svc| {
                let why = stickiness(svc, min_timeout_seconds).err()?;
                Some(self.not_sticky(&service_ref(svc), &why, min_timeout_seconds))
            })
            .collect();
        Findings {
            violations,
            warnings: Vec::new(),
        }
    }

    fn not_sticky(&self, service: &str, why: &NotSticky, min_timeout_seconds: i32) -> Violation {
        Violation {
            rule: RuleId::BuildkitdServiceNotSticky,
            message: format!(
                "{}{} behind {service}, which {}. {}, or {}.",
                sticky_prefix(self.daemon),
                self.found,
                why.problem(),
                self.fix,
                why.remedy(min_timeout_seconds)
            ),
        }
    }
}

/// Judges a demand for several buildkitd instances whose pods carry `labels`: always a violation
/// in single mode; in sticky mode, one per non-sticky Service in front of them.
pub(crate) async fn judge(
    cx: &Context<'_>,
    lookups: &Lookups<'_>,
    demand: &Demand,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<Findings, Stop> {
    let b = &cx.policy.config().buildkitd;
    match b.instances {
        Instances::Single => Ok(demand.single_findings()),
        Instances::Sticky => {
            let services = lookups.services(namespace, labels).await?;
            Ok(demand.sticky(fronting(&services, labels), b.min_sticky_timeout_seconds))
        }
    }
}

/// Detection's notes on a template (a role it had to assume), named for the workload.
pub(crate) fn template_notes<'a>(
    subject: &'a str,
    notes: impl Iterator<Item = &'a Warning> + 'a,
) -> impl Iterator<Item = Warning> + 'a {
    notes.map(move |note| {
        Warning::new(
            note.rule,
            format!("{subject}: pod template: {}", note.message),
        )
    })
}

/// Judges the instances of a pod template: `demand` says, from what detection found in it,
/// whether they are more than one buildkitd. With `footguns_at` (the template's spec path in the
/// object under review) the template's footguns are warned about too.
pub(crate) async fn judge_template(
    cx: &Context<'_>,
    lookups: &Lookups<'_>,
    namespace: &str,
    template: &PodTemplateSpec,
    footguns_at: Option<&str>,
    demand: impl FnOnce(&[Found]) -> Option<Demand>,
) -> Result<Findings, Stop> {
    let Some(spec) = template.spec.as_ref() else {
        return nothing();
    };
    let meta = template.metadata.as_ref();
    let found = cx
        .policy
        .detector()
        .classify(meta.and_then(|m| m.annotations.as_ref()), spec)
        .map_err(|e| Stop::Done(role_annotation(lookups.subject(), e)))?;
    let mut findings = footguns_at.map_or_else(Findings::default, |at| {
        footguns::check_template(lookups.subject(), at, spec, &found)
    });
    if footguns_at.is_some() {
        findings
            .warnings
            .extend(template_notes(lookups.subject(), found.notes.iter()));
    }
    if let Some(demand) = demand(&found) {
        let labels = meta.and_then(|m| m.labels.as_ref());
        // A failed lookup decides the demand (per cluster.failureMode); the template's own
        // warnings still reach the person applying it.
        match judge(cx, lookups, &demand, namespace, labels).await {
            Ok(f) | Err(Stop::Done(f)) => findings.extend(f),
            Err(unreadable) => return Err(unreadable),
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn demand() -> Demand {
        Demand {
            rule: RuleId::BuildkitdReplicas,
            found: "Deployment ci/bk asks for 3 replicas".to_owned(),
            fix: "Set replicas: 1".to_owned(),
            daemon: Family::Earthly,
        }
    }

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "bk", "namespace": "ci"}, "spec": spec}))
            .expect("service")
    }

    #[test]
    fn single_mode_message_names_both_ways_out() {
        assert_eq!(
            demand().single().message,
            "earthly/buildkitd does not support multi-node setups: Deployment ci/bk asks for 3 \
             replicas. Set replicas: 1, or enable sticky multi-instance mode and front it with a \
             Service using sessionAffinity: ClientIP."
        );
    }

    #[test]
    fn sticky_mode_names_the_service_that_is_not_sticky() {
        let plain = service(json!({"selector": {"app": "bk"}}));
        let f = demand().sticky([&plain], 600);
        assert_eq!(f.violations.len(), 1);
        assert_eq!(f.violations[0].rule, RuleId::BuildkitdServiceNotSticky);
        assert_eq!(
            f.violations[0].message,
            "earthly/buildkitd multi-instance mode needs sticky sessions: Deployment ci/bk asks \
             for 3 replicas behind Service ci/bk, which has sessionAffinity: None. Set replicas: \
             1, or set sessionAffinity: ClientIP with sessionAffinityConfig.clientIP.timeoutSeconds \
             of at least 600 on the Service."
        );
    }

    #[test]
    fn sticky_mode_accepts_sticky_services() {
        let sticky = service(json!({"selector": {"app": "bk"}, "sessionAffinity": "ClientIP"}));
        assert_eq!(demand().sticky([&sticky], 600), Findings::default());
    }
}
