//! Every rule's stable name: one enum used in messages, audit annotation keys, metric labels,
//! `check` reports and docs. The strings never change once released (dashboards, alerts and
//! audit pipelines key on them); `docs/policy.md`'s rule table is tested against this list.

use strum::{AsRefStr, EnumIter, EnumMessage, EnumString, IntoStaticStr};

/// A rule. Mutation rules keep their historic snake_case names (metric label values since the
/// first release), validation rules their kebab-case ones (audit annotation keys).
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
)]
pub enum RuleId {
    // --- mutation (`/mutate`), one per kind of patch ---
    #[strum(
        serialize = "privileged",
        message = "sets securityContext.privileged on Earthly runners and buildkitd"
    )]
    Privileged,
    #[strum(
        serialize = "scratch_volume",
        message = "mounts a scratch volume at the container's Earthly temp directory"
    )]
    ScratchVolume,
    #[strum(
        serialize = "cni_mtu",
        message = "sets CNI_MTU when mutation.cniMtu is configured"
    )]
    CniMtu,
    #[strum(
        serialize = "toleration",
        message = "adds the configured tolerations to privileged Earthly pods"
    )]
    Toleration,
    #[strum(
        serialize = "node_selector",
        message = "adds the configured nodeSelector entries to privileged Earthly pods"
    )]
    NodeSelector,
    #[strum(
        serialize = "node_affinity",
        message = "sets the configured node affinity on privileged Earthly pods that have none"
    )]
    NodeAffinity,

    // --- validation (`/validate`, and Pod Security at `/mutate`) ---
    #[strum(
        serialize = "buildkitd-replicas",
        message = "a buildkitd Deployment, StatefulSet or ReplicaSet asks for more than one replica"
    )]
    BuildkitdReplicas,
    #[strum(
        serialize = "buildkitd-daemonset",
        message = "a DaemonSet runs buildkitd, one instance per node"
    )]
    BuildkitdDaemonset,
    #[strum(
        serialize = "buildkitd-scale",
        message = "the scale subresource of a buildkitd workload is set above one replica"
    )]
    BuildkitdScale,
    #[strum(
        serialize = "buildkitd-autoscaler",
        message = "a HorizontalPodAutoscaler may scale a buildkitd workload above one replica"
    )]
    BuildkitdAutoscaler,
    #[strum(
        serialize = "buildkitd-second-pod",
        message = "a bare buildkitd pod would join another live buildkitd behind one Service"
    )]
    BuildkitdSecondPod,
    #[strum(
        serialize = "buildkitd-service-not-sticky",
        message = "sticky mode: a Service in front of several buildkitd does not pin clients"
    )]
    BuildkitdServiceNotSticky,
    #[strum(
        serialize = "buildkitd-second-workload",
        message = "two buildkitd workloads (or pods of two controllers) behind one Service"
    )]
    BuildkitdSecondWorkload,
    #[strum(
        serialize = "buildkitd-fleet-tls",
        message = "sticky mode: the buildkitd instances behind one Service differ in their TLS configuration"
    )]
    BuildkitdFleetTls,
    #[strum(
        serialize = "buildkitd-version-skew",
        message = "warning: a remote client's image version differs from the buildkitd behind the Service it names"
    )]
    BuildkitdVersionSkew,
    #[strum(
        serialize = "pod-security-admission",
        message = "a privileged Earthly pod in a namespace whose Pod Security level refuses it"
    )]
    PodSecurityAdmission,
    #[strum(
        serialize = "role-annotation",
        message = "an earthly.dev/role annotation cannot be understood"
    )]
    RoleAnnotation,
    #[strum(
        serialize = "lookup-failed",
        message = "a lookup a rule needs failed and cluster.failureMode is deny"
    )]
    LookupFailed,
}

impl RuleId {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// One sentence saying what the rule is about (docs, `check` reports).
    pub fn help(self) -> &'static str {
        self.get_message().unwrap_or_default()
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
