//! Every rule's stable name: one enum used in messages, audit annotation keys, metric labels,
//! `check` reports and docs. The strings never change once released (dashboards, alerts and
//! audit pipelines key on them); `docs/policy.md`'s rule table is tested against this list.

use strum::{AsRefStr, EnumIter, EnumMessage, EnumProperty, EnumString, IntoStaticStr};

/// A rule. Mutation rules keep their historic snake_case names (metric label values since the
/// first release), validation and warning rules their kebab-case ones (audit annotation keys).
///
/// Each carries, besides its name: `message`, one phrase saying what it is about (docs,
/// `--help`-like listings, SARIF's short description); `detailed_message`, one sentence with the
/// way out (SARIF's help, `check`'s rule table); the property `kind` (`mutation`, `violation` or
/// `warning`: what a finding of it is), and `field`, the JSON pointer a finding points at when
/// its message names no field.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    AsRefStr,
    IntoStaticStr,
    EnumString,
    EnumIter,
    EnumMessage,
    EnumProperty,
)]
pub enum RuleId {
    // --- mutation (`/mutate`), one per kind of patch ---
    #[strum(
        serialize = "privileged",
        message = "sets securityContext.privileged on Earthly runners and buildkitd",
        detailed_message = "The mutating webhook makes Earthly containers privileged.",
        props(kind = "mutation")
    )]
    Privileged,
    #[strum(
        serialize = "scratch_volume",
        message = "mounts a scratch volume at the container's Earthly temp directory",
        detailed_message = "The mutating webhook mounts a scratch volume for Earthly containers.",
        props(kind = "mutation")
    )]
    ScratchVolume,
    #[strum(
        serialize = "cni_mtu",
        message = "sets CNI_MTU when mutation.cniMtu is configured",
        detailed_message = "The mutating webhook sets CNI_MTU on buildkitd.",
        props(kind = "mutation")
    )]
    CniMtu,
    #[strum(
        serialize = "toleration",
        message = "adds the configured tolerations to privileged Earthly pods",
        detailed_message = "The mutating webhook adds the privileged nodes' toleration.",
        props(kind = "mutation")
    )]
    Toleration,
    #[strum(
        serialize = "node_selector",
        message = "adds the configured nodeSelector entries to privileged Earthly pods",
        detailed_message = "The mutating webhook adds the privileged nodes' nodeSelector.",
        props(kind = "mutation")
    )]
    NodeSelector,
    #[strum(
        serialize = "node_affinity",
        message = "sets the configured node affinity on privileged Earthly pods that have none",
        detailed_message = "The mutating webhook adds the privileged nodes' node affinity.",
        props(kind = "mutation")
    )]
    NodeAffinity,

    // --- validation (`/validate`, and Pod Security at `/mutate`) ---
    #[strum(
        serialize = "buildkitd-replicas",
        message = "a buildkitd Deployment, StatefulSet or ReplicaSet asks for more than one replica",
        detailed_message = "earthly/buildkitd keeps its state on one node: run one replica, or enable sticky multi-instance mode and front the replicas with a Service using sessionAffinity: ClientIP.",
        props(kind = "violation", field = "/spec/replicas")
    )]
    BuildkitdReplicas,
    #[strum(
        serialize = "buildkitd-daemonset",
        message = "a DaemonSet runs buildkitd, one instance per node",
        detailed_message = "A DaemonSet runs one buildkitd per node: use a Deployment or StatefulSet with one replica.",
        props(kind = "violation", field = "/kind")
    )]
    BuildkitdDaemonset,
    #[strum(
        serialize = "buildkitd-scale",
        message = "the scale subresource of a buildkitd workload is set above one replica",
        detailed_message = "Scaling buildkitd past one replica is refused for the same reason as buildkitd-replicas.",
        props(kind = "violation", field = "/spec/replicas")
    )]
    BuildkitdScale,
    #[strum(
        serialize = "buildkitd-autoscaler",
        message = "a HorizontalPodAutoscaler may scale a buildkitd workload above one replica",
        detailed_message = "An autoscaler may scale buildkitd past one replica: cap maxReplicas at 1, or enable sticky multi-instance mode.",
        props(kind = "violation", field = "/spec/maxReplicas")
    )]
    BuildkitdAutoscaler,
    #[strum(
        serialize = "buildkitd-second-pod",
        message = "a bare buildkitd pod would join another live buildkitd behind one Service",
        detailed_message = "A second bare buildkitd pod splits the cache: keep one.",
        props(kind = "violation")
    )]
    BuildkitdSecondPod,
    #[strum(
        serialize = "buildkitd-service-not-sticky",
        message = "sticky mode: a Service in front of several buildkitd does not pin clients",
        detailed_message = "Clients must reach the same buildkitd each time: set sessionAffinity: ClientIP on its Service.",
        props(kind = "violation", field = "/spec/sessionAffinity")
    )]
    BuildkitdServiceNotSticky,
    #[strum(
        serialize = "buildkitd-second-workload",
        message = "two buildkitd workloads (or pods of two controllers) behind one Service",
        detailed_message = "Two buildkitd workloads behind one Service split the cache: keep one behind it, or enable sticky multi-instance mode.",
        props(kind = "violation")
    )]
    BuildkitdSecondWorkload,
    #[strum(
        serialize = "buildkitd-fleet-tls",
        message = "sticky mode: the buildkitd instances behind one Service differ in their TLS configuration",
        detailed_message = "The buildkitd instances behind one Service must share one TLS configuration: the same BUILDKIT_TLS_ENABLED and certificate Secret.",
        props(kind = "violation")
    )]
    BuildkitdFleetTls,
    #[strum(
        serialize = "buildkitd-version-skew",
        message = "a remote client's image version differs from the buildkitd behind the Service it names",
        detailed_message = "A remote client and its buildkitd should run the same Earthly version: mismatched versions are unsupported.",
        props(kind = "warning", field = "/spec/containers")
    )]
    BuildkitdVersionSkew,
    #[strum(
        serialize = "pod-security-admission",
        message = "a privileged Earthly pod in a namespace whose Pod Security level refuses it",
        detailed_message = "The namespace's Pod Security level refuses privileged pods, which Earthly needs: label the namespace pod-security.kubernetes.io/enforce=privileged.",
        props(kind = "violation", field = "/spec/containers")
    )]
    PodSecurityAdmission,
    #[strum(
        serialize = "role-annotation",
        message = "an earthly.dev/role annotation cannot be understood",
        detailed_message = "The earthly.dev/role annotation must name a role the webhook knows.",
        props(kind = "violation", field = "/metadata/annotations")
    )]
    RoleAnnotation,
    #[strum(
        serialize = "lookup-failed",
        message = "a lookup a rule needs failed and cluster.failureMode is deny",
        detailed_message = "A rule needed an object the webhook could not look up (or, in check, that is not in the input): retry with the API reachable, or add the object to the input.",
        props(kind = "violation")
    )]
    LookupFailed,
    #[strum(
        serialize = "unreadable-object",
        message = "the object cannot be read as its kind",
        detailed_message = "The webhook could not read the object as its kind: the message names the field.",
        props(kind = "violation")
    )]
    UnreadableObject,

    // --- warnings, whatever the mode ---
    #[strum(
        serialize = "earthly-not-privileged",
        message = "an Earthly runner or buildkitd is not privileged and the mutating webhook does not reach it",
        detailed_message = "Earthly's runner and buildkitd need securityContext.privileged: true; set it, or install the mutating webhook.",
        props(kind = "warning")
    )]
    EarthlyNotPrivileged,
    #[strum(
        serialize = "earthly-no-scratch-volume",
        message = "an Earthly runner or buildkitd has no scratch volume and the mutating webhook does not reach it",
        detailed_message = "Earthly's runner and buildkitd need a scratch volume (emptyDir) at their temp directory; mount one, or install the mutating webhook.",
        props(kind = "warning")
    )]
    EarthlyNoScratchVolume,
    #[strum(
        serialize = "buildkitd-tls-off",
        message = "buildkitd serves over TCP with BUILDKIT_TLS_ENABLED=false",
        detailed_message = "buildkitd serves over TCP without TLS: enable TLS and share its certificates with the clients.",
        props(kind = "warning")
    )]
    BuildkitdTlsOff,
    #[strum(
        serialize = "client-tls-off",
        message = "an Earthly client reaches a remote buildkitd over plain TCP",
        detailed_message = "The Earthly client talks to a remote buildkitd over plain TCP: enable TLS on both.",
        props(kind = "warning")
    )]
    ClientTlsOff,
    #[strum(
        serialize = "src-dir-ignored",
        message = "a container sets SRC_DIR, which Earthly no longer reads",
        detailed_message = "Earthly no longer reads SRC_DIR: put the source in the working directory instead.",
        props(kind = "warning")
    )]
    SrcDirIgnored,
    #[strum(
        serialize = "role-assumed",
        message = "detection had to assume an Earthly container's role",
        detailed_message = "The role was chosen by the image entrypoint's rules from what the webhook can read: annotate the pod with earthly.dev/role.<container> to settle it.",
        props(kind = "warning")
    )]
    RoleAssumed,
    #[strum(
        serialize = "client-without-buildkitd",
        message = "a client's BUILDKIT_HOST points inside the pod, but no buildkitd runs there",
        detailed_message = "Run buildkitd next to the client (a second container, or a native sidecar), or point BUILDKIT_HOST at a buildkitd Service.",
        props(kind = "warning")
    )]
    ClientWithoutBuildkitd,
    #[strum(
        serialize = "windows-pod",
        message = "an Earthly container in a Windows pod, left unchanged",
        detailed_message = "The apiserver refuses privileged for Windows pods and Earthly runs on Linux only: set spec.os.name to linux, or remove it.",
        props(kind = "warning", field = "/spec/os/name")
    )]
    WindowsPod,
    #[strum(
        serialize = "host-users-false",
        message = "hostUsers: false next to a privileged Earthly container",
        detailed_message = "Earthly's guide covers privileged pods in the host user namespace only: remove hostUsers: false.",
        props(kind = "warning", field = "/spec/hostUsers")
    )]
    HostUsersFalse,
    #[strum(
        serialize = "run-as-non-root",
        message = "runAsNonRoot: true on an Earthly container, whose images run as root",
        detailed_message = "Earthly's images run as root to start buildkitd: set runAsNonRoot to false for the Earthly container.",
        props(kind = "warning")
    )]
    RunAsNonRoot,
    #[strum(
        serialize = "read-only-scratch",
        message = "the scratch path lies in a read-only mount",
        detailed_message = "Earthly writes its cache at the scratch path: mount it read-write, or point the tmp-dir variable at a writable volume.",
        props(kind = "warning")
    )]
    ReadOnlyScratch,
    #[strum(
        serialize = "buildkitd-rollout-shared-cache",
        message = "a one-replica buildkitd Deployment rolls out with RollingUpdate over a PersistentVolumeClaim cache",
        detailed_message = "Every RollingUpdate rollout runs two buildkitd on one cache for a while: set spec.strategy.type: Recreate.",
        props(kind = "warning", field = "/spec/strategy")
    )]
    BuildkitdRolloutSharedCache,
}

/// What a finding of a rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// A change the mutating webhook makes.
    Mutation,
    /// A broken rule: denied, warned about or recorded, as the mode says.
    Violation,
    /// Worth telling, whatever the mode.
    Warning,
}

impl RuleId {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// One phrase saying what the rule is about (docs, `check` reports).
    pub fn help(self) -> &'static str {
        self.get_message().unwrap_or_default()
    }

    /// One sentence with the way out.
    pub fn fix(self) -> &'static str {
        self.get_detailed_message().unwrap_or_default()
    }

    /// What a finding of this rule is.
    pub fn kind(self) -> RuleKind {
        match self.get_str("kind") {
            Some("mutation") => RuleKind::Mutation,
            Some("warning") => RuleKind::Warning,
            _ => RuleKind::Violation,
        }
    }

    /// The JSON pointer a finding points at when its message names no field.
    pub fn field(self) -> Option<&'static str> {
        self.get_str("field")
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something worth telling the person who applies an object, and the rule that tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub rule: RuleId,
    pub message: String,
}

impl Warning {
    pub fn new(rule: RuleId, message: String) -> Self {
        Warning { rule, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn names_are_unique_and_parse_back() {
        let mut seen = std::collections::BTreeSet::new();
        for id in RuleId::iter() {
            assert!(seen.insert(id.as_str()), "{id} twice");
            assert_eq!(id.as_str().parse::<RuleId>(), Ok(id));
            assert!(!id.help().is_empty(), "{id} has no help text");
            assert!(id.fix().ends_with('.'), "{id} has no way out");
            assert!(
                matches!(
                    id.get_str("kind"),
                    Some("mutation" | "violation" | "warning")
                ),
                "{id} has no kind"
            );
        }
    }

    #[test]
    fn released_names_stay() {
        assert_eq!(RuleId::ScratchVolume.as_str(), "scratch_volume");
        assert_eq!(
            RuleId::BuildkitdServiceNotSticky.as_str(),
            "buildkitd-service-not-sticky"
        );
        assert_eq!(RuleId::LookupFailed.to_string(), "lookup-failed");
    }
}
