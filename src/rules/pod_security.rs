//! Pod Security Admission: Earthly's privileged pods are refused in namespaces that enforce the
//! `baseline` or `restricted` Pod Security Standard, with an error that does not mention
//! Earthly. This rule says so first, naming the label to set. The namespace's labels are looked
//! up by the caller.

use std::collections::BTreeMap;

use super::{Context, Findings, RuleId, Violation};
use crate::cluster::LookupError;
use crate::detect::Found;

/// Pod Security Admission, at `/mutate`: a pod that will run privileged once mutated, in a
/// namespace that enforces `baseline` or `restricted`. At `/mutate` because the apiserver's
/// PodSecurity plugin runs before every validating webhook, so `/validate` would never see the
/// pods it refuses (docs/policy.md). Advisory: when the namespace cannot be looked up the check
/// is skipped, whatever the failure mode, since the pod may well be fine.
pub(crate) async fn judge(
    cx: &Context<'_>,
    namespace: Option<&str>,
    subject: &str,
    found: &[Found],
) -> Findings {
    let privileged: Vec<&Found> = found.iter().filter(|f| f.role.needs_privileges()).collect();
    let Some(namespace) = namespace.filter(|_| !privileged.is_empty()) else {
        return Findings::default();
    };
    let labels = match cx.cluster.namespace_labels(namespace).await {
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
        violations: check(subject, namespace, &labels, &privileged)
            .into_iter()
            .collect(),
        warnings: Vec::new(),
    }
}

/// The namespace label that makes Pod Security Admission refuse pods.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// The only level that admits privileged containers.
pub const PRIVILEGED_LEVEL: &str = "privileged";

/// The rule. `subject` names the pod, `privileged` lists the containers that will run
/// privileged once the mutation is applied, `labels` are the namespace's.
pub fn check(
    subject: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    privileged: &[&Found],
) -> Option<Violation> {
    let first = privileged.first()?;
    let level = labels.get(ENFORCE_LABEL)?;
    if level == PRIVILEGED_LEVEL {
        return None;
    }
    let standard = match level.as_str() {
        "baseline" | "restricted" => format!("the {level} Pod Security Standard"),
        // Pod Security Admission reads a level it does not know as `restricted`
        // (pod-security-admission api.PolicyToEvaluate).
        other => format!(
            "Pod Security level {other:?}, which Pod Security Admission reads as restricted"
        ),
    };
    let containers = if privileged.len() == 1 {
        format!("container {} ({})", first.name, first.role.describe())
    } else {
        let list: Vec<String> = privileged
            .iter()
            .map(|f| format!("{} ({})", f.name, f.role.describe()))
            .collect();
        format!("containers {}", list.join(", "))
    };
    Some(Violation {
        rule: RuleId::PodSecurityAdmission,
        message: format!(
            "{subject}: {containers} must run privileged, but namespace {namespace} enforces \
             {standard} ({ENFORCE_LABEL}: {level}), so Pod Security Admission will refuse the \
             pod. Label the namespace {ENFORCE_LABEL}: {PRIVILEGED_LEVEL}, or run Earthly in a \
             namespace that allows privileged pods."
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{ContainerList, Role};

    fn found(name: &str, role: Role) -> Found {
        Found {
            list: ContainerList::Containers,
            index: 0,
            name: name.to_owned(),
            role,
            family: crate::detect::Family::Earthly,
        }
    }

    fn labels(level: &str) -> BTreeMap<String, String> {
        [(ENFORCE_LABEL.to_owned(), level.to_owned())]
            .into_iter()
            .collect()
    }

    #[test]
    fn warns_about_privileged_runner_in_baseline_namespace() {
        let f = found("earthly", Role::AllInOne);
        let v = check("Pod ci/runner-*", "ci", &labels("baseline"), &[&f]).expect("violation");
        assert_eq!(v.rule, RuleId::PodSecurityAdmission);
        assert_eq!(
            v.message,
            "Pod ci/runner-*: container earthly (all-in-one Earthly runner) must run privileged, \
             but namespace ci enforces the baseline Pod Security Standard \
             (pod-security.kubernetes.io/enforce: baseline), so Pod Security Admission will \
             refuse the pod. Label the namespace pod-security.kubernetes.io/enforce: privileged, \
             or run Earthly in a namespace that allows privileged pods."
        );
    }

    #[test]
    fn warns_about_buildkitd_in_restricted_namespace() {
        let f = found("buildkitd", Role::Buildkitd);
        let v = check("Pod ci/bk", "ci", &labels("restricted"), &[&f]).expect("violation");
        assert!(
            v.message
                .contains("enforces the restricted Pod Security Standard")
        );
    }

    #[test]
    fn unknown_level_is_read_as_restricted() {
        let f = found("buildkitd", Role::Buildkitd);
        let v = check("Pod ci/bk", "ci", &labels("Baseline"), &[&f]).expect("violation");
        assert!(v.message.contains(
            "enforces Pod Security level \"Baseline\", which Pod Security Admission reads as restricted"
        ));
    }

    #[test]
    fn names_every_privileged_container() {
        let a = found("a", Role::Buildkitd);
        let b = found("b", Role::AllInOne);
        let v = check("Pod ci/p", "ci", &labels("baseline"), &[&a, &b]).expect("violation");
        assert!(
            v.message
                .contains("containers a (buildkitd), b (all-in-one Earthly runner) must run")
        );
    }

    #[test]
    fn privileged_namespace_is_fine() {
        let f = found("earthly", Role::AllInOne);
        assert_eq!(check("Pod ci/p", "ci", &labels("privileged"), &[&f]), None);
    }

    #[test]
    fn unlabelled_namespace_is_fine() {
        let f = found("earthly", Role::AllInOne);
        let warn_only: BTreeMap<String, String> = [(
            "pod-security.kubernetes.io/warn".to_owned(),
            "restricted".to_owned(),
        )]
        .into_iter()
        .collect();
        assert_eq!(check("Pod ci/p", "ci", &BTreeMap::new(), &[&f]), None);
        assert_eq!(check("Pod ci/p", "ci", &warn_only, &[&f]), None);
    }

    #[test]
    fn pod_without_privileged_containers_is_fine() {
        assert_eq!(check("Pod ci/p", "ci", &labels("restricted"), &[]), None);
    }
}
