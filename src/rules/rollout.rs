//! A one-replica buildkitd Deployment that rolls out with `RollingUpdate` and keeps its cache on
//! a PersistentVolumeClaim: during every rollout the Deployment controller starts the new
//! buildkitd before the old one has stopped (even with `maxSurge: 0` it does not wait for the
//! old pod's termination), so two buildkitd use one cache at once, or the new pod waits on a
//! ReadWriteOnce claim still attached to another node. `Recreate` stops the old pod first.
//!
//! Any claim counts, whatever its access mode (which would take a lookup): a ReadWriteMany cache
//! shared by two buildkitd is the same hazard, and a ReadOnlyMany one is no cache.

use k8s_openapi::api::core::v1::PodSpec;
use serde::Deserialize;

use super::{RuleId, Warning};
use crate::detect::{Found, Role};

/// A Deployment's `spec.strategy`, as the rule reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Strategy {
    #[serde(rename = "type")]
    pub type_: Option<String>,
}

/// The warning for a Deployment `subject` with `replicas` and `strategy` whose template is
/// `spec`, with `found` what detection found in it.
pub fn shared_cache(
    subject: &str,
    replicas: Option<i32>,
    strategy: Option<&Strategy>,
    spec: &PodSpec,
    found: &[Found],
) -> Option<Warning> {
    // Several replicas break `buildkitd-replicas` first; an absent type is RollingUpdate.
    let rolling = strategy
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    if replicas.unwrap_or(1) != 1 || !rolling {
        return None;
    }
    let (container, volume, claim) = found.iter().find_map(|f| {
        let c = f.container(spec)?;
        if f.role != Role::Buildkitd {
            return None;
        }
        c.volume_mounts.iter().flatten().find_map(|m| {
            let v = spec.volumes.iter().flatten().find(|v| v.name == m.name)?;
            let claim = v.persistent_volume_claim.as_ref()?;
            Some((c.name.as_str(), m.name.as_str(), claim.claim_name.as_str()))
        })
    })?;
    Some(Warning::new(
        RuleId::BuildkitdRolloutSharedCache,
        format!(
            "{subject}: container {container} keeps its cache on PersistentVolumeClaim {claim} \
             (volume {volume}) and the Deployment rolls out with RollingUpdate \
             (spec.strategy.type): every rollout starts a second buildkitd before the first has \
             stopped, so both use one cache, or the new pod waits for a ReadWriteOnce claim \
             still attached to another node; set spec.strategy.type: Recreate"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Detection;
    use crate::detect::Detector;

    fn warned(replicas: Option<i32>, strategy: Option<&str>, volume: serde_json::Value) -> bool {
        let spec: PodSpec = serde_json::from_value(json!({
            "containers": [{"name": "bk", "image": "earthly/buildkitd:v0.8.15",
                "volumeMounts": [{"name": "cache", "mountPath": "/tmp/earthly"}]}],
            "volumes": [volume],
        }))
        .expect("spec");
        let found = Detector::new(&Detection::default())
            .expect("detector")
            .classify(None, &spec)
            .expect("classify");
        let strategy = Strategy {
            type_: strategy.map(str::to_owned),
        };
        let w = shared_cache("Deployment ci/bk", replicas, Some(&strategy), &spec, &found);
        if let Some(w) = &w {
            assert_eq!(w.rule, RuleId::BuildkitdRolloutSharedCache);
            assert!(
                w.message
                    .contains("PersistentVolumeClaim bk-cache (volume cache)")
            );
            assert!(w.message.ends_with("set spec.strategy.type: Recreate"));
        }
        w.is_some()
    }

    fn claim() -> serde_json::Value {
        json!({"name": "cache", "persistentVolumeClaim": {"claimName": "bk-cache"}})
    }

    #[test]
    fn rolling_update_over_a_claim_is_warned_about() {
        assert!(warned(None, None, claim()));
        assert!(warned(Some(1), Some("RollingUpdate"), claim()));
    }

    #[test]
    fn recreate_an_empty_dir_or_several_replicas_are_not() {
        assert!(!warned(Some(1), Some("Recreate"), claim()));
        assert!(!warned(
            None,
            None,
            json!({"name": "cache", "emptyDir": {}})
        ));
        assert!(!warned(Some(3), None, claim()));
    }
}
