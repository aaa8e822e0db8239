//! What sits behind a buildkitd Service: the instances it selects, told apart by the controller
//! that made their pods (a rollout of one workload is one instance, two workloads of one replica
//! each are two), and the rules over them. In `single` mode a second instance behind a Service is
//! a violation (`buildkitd-second-workload`); in `sticky` mode the Service must be sticky and the
//! instances must share one TLS configuration (`buildkitd-fleet-tls`, the guide's third caveat:
//! "the TLS configuration needs to be shared across the entire fleet"). Judged from both sides:
//! when a buildkitd workload is applied, and when a Service is.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Service};

use super::buildkitd::{daemon, pod_ref};
use super::instances::Demand;
use super::lookups::{Lookups, Stop};
use super::sticky::{fleet_tls_prefix, fronting, pod_selector, service_ref};
use super::{Context, Findings, RuleId, Violation};
use crate::cluster::Workload;
use crate::config::Instances;
use crate::detect::{Detector, Family, Found, Role, env_var};

/// How many live buildkitd pods a fleet lookup reads behind one Service. A rollout of one
/// workload shows a few pods of it at once (`maxSurge`), so eight find another workload's pod in
/// any fleet the rules admit, while a large fleet does not cost a full list; messages say "at
/// least" of what they count.
pub const FLEET_PODS: usize = 8;

/// Where the buildkitd image reads its certificates when `BUILDKIT_TLS_ENABLED` is true: "mount
/// certificates into the right place (`/etc/*.pem`)" (the image's documentation).
const CERT_FILES: &[&str] = &["/etc/ca.pem", "/etc/cert.pem", "/etc/key.pem"];

/// The label the Deployment controller puts on the pods of each of its ReplicaSets, whose name
/// is the Deployment's followed by `-<hash>`.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// A buildkitd's TLS configuration, as far as the fleet must share it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tls {
    /// `BUILDKIT_TLS_ENABLED` is true.
    pub enabled: bool,
    /// With TLS on: the Secrets mounted at the certificate paths.
    pub secrets: BTreeSet<String>,
}

impl Tls {
    /// The TLS configuration of buildkitd container `c` of pod spec `spec`.
    pub fn of(spec: &PodSpec, c: &Container) -> Self {
        let enabled = env_var(c, "BUILDKIT_TLS_ENABLED")
            .and_then(|e| e.value.as_deref())
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1"));
        if !enabled {
            return Tls::default();
        }
        let at_cert_paths = c
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| is_cert_path(&m.mount_path))
            .map(|m| m.name.as_str())
            .collect::<BTreeSet<_>>();
        let secrets = spec
            .volumes
            .iter()
            .flatten()
            .filter(|v| at_cert_paths.contains(v.name.as_str()))
            .flat_map(|v| {
                let secret = v.secret.as_ref().and_then(|s| s.secret_name.clone());
                let projected = v
                    .projected
                    .iter()
                    .flat_map(|p| p.sources.iter().flatten())
                    .filter_map(|s| s.secret.as_ref().map(|s| s.name.clone()));
                secret.into_iter().chain(projected).collect::<Vec<_>>()
            })
            .collect();
        Tls { enabled, secrets }
    }

    /// `TLS on with certificates from Secret bk-tls`.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "TLS off (BUILDKIT_TLS_ENABLED is not true)".to_owned();
        }
        if self.secrets.is_empty() {
            return "TLS on with no certificate Secret mounted at /etc/*.pem".to_owned();
        }
        let names: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        format!("TLS on with certificates from Secret {}", names.join(", "))
    }
}

/// Whether a mount puts files where buildkitd reads its certificates: one of the files, or the
/// directory holding them.
fn is_cert_path(mount_path: &str) -> bool {
    let path = mount_path.trim_end_matches('/');
    path == "/etc" || CERT_FILES.contains(&path)
}

/// One buildkitd instance behind a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The controller of its pods (`Deployment ci/bk-blue`), or the pod itself when bare.
    pub name: String,
    pub tls: Tls,
    /// The image of its buildkitd container.
    pub image: Option<String>,
    /// Whose buildkitd it is, as messages name it.
    pub family: Family,
}

/// The instance a pod belongs to, as messages name it: its controller (a ReplicaSet's pods by
/// their Deployment, read from the ReplicaSet's name and the `pod-template-hash` label), or the
/// pod itself when no controller owns it.
pub fn controller_of(pod: &Pod) -> String {
    let meta = &pod.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    else {
        return pod_ref(pod);
    };
    let hash = meta.labels.as_ref().and_then(|l| l.get(POD_TEMPLATE_HASH));
    if owner.kind == "ReplicaSet"
        && let Some(deployment) = hash.and_then(|h| owner.name.strip_suffix(&format!("-{h}")))
    {
        return format!("Deployment {namespace}/{deployment}");
    }
    format!("{} {namespace}/{}", owner.kind, owner.name)
}

/// The buildkitd container detection found in a pod spec, if any.
pub fn buildkitd_container<'a>(spec: &'a PodSpec, found: &[Found]) -> Option<&'a Container> {
    found
        .iter()
        .find(|f| f.role == Role::Buildkitd)?
        .container(spec)
}

/// The instances live buildkitd `pods` belong to, one per controller (its first pod speaks for
/// it), in the order they were listed.
pub fn instances(detector: &Detector, pods: &[Pod]) -> Vec<Instance> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for pod in pods {
        let name = controller_of(pod);
        let Some(spec) = pod.spec.as_ref() else {
            continue;
        };
        if !seen.insert(name.clone()) {
            continue;
        }
        let found = detector
            .classify(pod.metadata.annotations.as_ref(), spec)
            .map(|c| c.found)
            .unwrap_or_default();
        // A pod whose role annotations cannot be read counts by its images (`is_live_buildkitd`).
        let container = buildkitd_container(spec, &found).or_else(|| {
            spec.containers
                .iter()
                .find(|c| detector.container_role(c) == Some(Role::Buildkitd))
        });
        out.push(Instance {
            name,
            tls: container.map(|c| Tls::of(spec, c)).unwrap_or_default(),
            image: container.and_then(|c| c.image.clone()),
            family: container
                .and_then(|c| detector.family(c))
                .unwrap_or(Family::Earthly),
        });
    }
    out
}

/// `A`, `A and B`, `A, B and C`; "at least" when the lookup may have stopped early.
fn list(names: &[&str], maybe_more: bool) -> String {
    let mut text = match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    };
    if maybe_more {
        text.push_str(" (and maybe more)");
    }
    text
}

/// Single and sticky mode, a workload's side: `subject` (a one-replica buildkitd workload)
/// would join `others` behind `service`. `single` mode refuses it; `sticky` mode wants the
/// Service sticky and the TLS configuration shared.
pub fn check_joining(
    subject: &str,
    own_tls: &Tls,
    service: &Service,
    others: &[Instance],
    instances: Instances,
    daemon: Family,
    min_timeout_seconds: i32,
) -> Findings {
    let Some(first) = others.first() else {
        return Findings::default();
    };
    let names: Vec<&str> = others.iter().map(|i| i.name.as_str()).collect();
    let next_to = list(&names, others.len() >= FLEET_PODS);
    let svc = service_ref(service);
    let fix = format!(
        "Run one buildkitd per Service (remove {} first, or label the pods of {subject} so that \
         {svc} does not select them)",
        first.name
    );
    match instances {
        Instances::Single => Demand {
            rule: RuleId::BuildkitdSecondWorkload,
            found: format!("{subject} would be a second buildkitd behind {svc}, next to {next_to}"),
            fix,
            daemon,
        }
        .single_findings(),
        Instances::Sticky => {
            let mut out = Demand {
                rule: RuleId::BuildkitdSecondWorkload,
                found: format!("{subject} would be a second buildkitd next to {next_to}"),
                fix,
                daemon,
            }
            .sticky([service], min_timeout_seconds);
            let mut fleet = vec![(subject, own_tls)];
            fleet.extend(others.iter().map(|i| (i.name.as_str(), &i.tls)));
            out.violations.extend(check_tls(&svc, &fleet, daemon));
            out
        }
    }
}

/// Single mode, a Service's side: `subject` selects the buildkitd `instances` (its live pods,
/// one per controller); more than one is a violation.
pub fn check_service(subject: &str, instances: &[Instance], daemon: Family) -> Option<Violation> {
    if instances.len() < 2 {
        return None;
    }
    let names: Vec<&str> = instances.iter().map(|i| i.name.as_str()).collect();
    let maybe_more = instances.len() >= FLEET_PODS;
    let count = if maybe_more {
        format!("at least {}", instances.len())
    } else {
        instances.len().to_string()
    };
    Some(
        Demand {
            rule: RuleId::BuildkitdSecondWorkload,
            found: format!(
                "{subject} selects {count} buildkitd instances: {}",
                list(&names, maybe_more)
            ),
            fix: "Change its selector so that it selects the pods of one of them".to_owned(),
            daemon,
        }
        .single(),
    )
}

/// Sticky mode: the instances behind `service` (named with their TLS configuration) must share
/// one. The violation names each configuration and who has it.
pub fn check_tls(service: &str, fleet: &[(&str, &Tls)], daemon: Family) -> Option<Violation> {
    let mut by_config: BTreeMap<&Tls, Vec<&str>> = BTreeMap::new();
    for (name, tls) in fleet {
        by_config.entry(*tls).or_default().push(name);
    }
    if by_config.len() < 2 {
        return None;
    }
    let groups: Vec<String> = by_config
        .iter()
        .map(|(tls, names)| format!("{} has {}", list(names, false), tls.describe()))
        .collect();
    Some(Violation {
        rule: RuleId::BuildkitdFleetTls,
        message: format!(
            "{}the buildkitd instances behind {service} differ: {}. Give every instance the same \
             BUILDKIT_TLS_ENABLED and mount the same certificate Secret at /etc/*.pem, or run one \
             buildkitd per Service.",
            fleet_tls_prefix(daemon),
            groups.join("; ")
        ),
    })
}

/// A one-replica buildkitd workload being applied: the Services in front of its pods, and the
/// other instances behind each (one list of Services, one list of pods per fronting Service).
pub(crate) async fn judge_workload(
    cx: &Context<'_>,
    lookups: &Lookups<'_>,
    workload: &Workload,
    found: &[Found],
) -> Result<Findings, Stop> {
    let Some(spec) = workload.template.spec.as_ref() else {
        return Ok(Findings::default());
    };
    let Some(container) = buildkitd_container(spec, found) else {
        return Ok(Findings::default());
    };
    let b = &cx.policy.config().buildkitd;
    let detector = cx.policy.detector();
    let namespace = workload.namespace.as_str();
    let labels = workload
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    let own_tls = Tls::of(spec, container);
    let own_name = format!("{} {namespace}/{}", workload.kind.as_str(), workload.name);
    let services = lookups.services(namespace, labels).await?;
    let mut out = Findings::default();
    for svc in fronting(&services, labels) {
        let Some(selector) = pod_selector(svc) else {
            continue;
        };
        let pods = lookups.fleet(detector, namespace, selector).await?;
        // The workload's own pods, of every ReplicaSet of a rollout, are one instance: its own.
        let others: Vec<Instance> = instances(detector, &pods)
            .into_iter()
            .filter(|i| i.name != own_name)
            .collect();
        out.extend(check_joining(
            lookups.subject(),
            &own_tls,
            svc,
            &others,
            b.instances,
            daemon(found),
            b.min_sticky_timeout_seconds,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
