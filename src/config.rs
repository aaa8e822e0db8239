//! The policy file: its types, defaults and validation. Every field is optional; a missing file
//! means the defaults, and an unknown field or an impossible value is a start-up error that names
//! the field.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{NodeAffinity, Toleration, Volume};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod detection;
mod schema;

pub use detection::Detection;
pub use schema::json_schema;

/// Name given to the scratch volume (a suffix is added when a volume of that name exists).
pub const DEFAULT_SCRATCH_VOLUME_NAME: &str = "earthly-tmp";
/// The upstream sticky example's `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_MIN_STICKY_TIMEOUT_SECONDS: i32 = 600;

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// How Earthly containers are recognised.
    pub detection: Detection,
    /// What the mutating webhook adds to Earthly pods.
    pub mutation: Mutation,
    /// Rules for buildkitd workloads.
    pub buildkitd: Buildkitd,
    /// How violations are handled.
    pub policy: Policy,
    /// Lookups against the Kubernetes API.
    pub cluster: Cluster,
}

/// What the mutating webhook adds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Mutation {
    /// The scratch volume mounted at the family's tmp-dir variable (`EARTHLY_TMP_DIR`, default
    /// `/tmp/earthly`; EarthBuild's `EARTH_TMP_DIR`, default `/tmp/earthbuild`).
    pub scratch_volume: ScratchVolume,
    /// Sets `CNI_MTU` on Earthly containers that do not set it (needed with Calico when the
    /// cluster and CNI MTUs differ). Unset means leave it alone.
    #[schemars(range(min = 576, max = 9216))]
    pub cni_mtu: Option<u32>,
    /// Tolerations added to Earthly pods that need privileges (each one only when an equal one
    /// is not there already), so they can land on a tainted, dedicated instance group.
    #[schemars(schema_with = "schema::tolerations")]
    pub tolerations: Vec<Toleration>,
    /// nodeSelector entries added to privileged Earthly pods; keys the pod already sets are kept.
    pub node_selector: BTreeMap<String, String>,
    /// Node affinity set on privileged Earthly pods that state no node affinity of their own.
    #[schemars(schema_with = "schema::node_affinity")]
    pub node_affinity: Option<NodeAffinity>,
}

/// The scratch volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ScratchVolume {
    /// Name of the volume added to the pod. When the pod already has a volume of that name,
    /// `-1`, `-2`, ... is appended.
    #[schemars(
        length(min = 1, max = 60),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Any Kubernetes volume source: `emptyDir: {sizeLimit: 50Gi}`, a generic `ephemeral`
    /// PVC template, `hostPath`, ... Default `emptyDir: {}`. Checked against the Kubernetes
    /// `Volume` schema at start-up.
    #[schemars(schema_with = "schema::scratch_source")]
    pub source: serde_json::Map<String, serde_json::Value>,
}

impl Default for ScratchVolume {
    fn default() -> Self {
        Self {
            name: DEFAULT_SCRATCH_VOLUME_NAME.to_owned(),
            source: [("emptyDir".to_owned(), serde_json::json!({}))]
                .into_iter()
                .collect(),
        }
    }
}

/// How many buildkitd instances may serve one address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Instances {
    /// One buildkitd per address: upstream supports nothing else.
    #[default]
    Single,
    /// Experimental multi-instance mode, allowed only behind ClientIP session affinity.
    Sticky,
}

/// Rules for buildkitd workloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Buildkitd {
    /// `single` (default) or `sticky`.
    pub instances: Instances,
    /// In sticky mode, the least `sessionAffinityConfig.clientIP.timeoutSeconds` a Service in
    /// front of buildkitd may have. It should be longer than a build.
    #[schemars(range(min = 1, max = 86_400))]
    pub min_sticky_timeout_seconds: i32,
}

impl Default for Buildkitd {
    fn default() -> Self {
        Self {
            instances: Instances::Single,
            min_sticky_timeout_seconds: DEFAULT_MIN_STICKY_TIMEOUT_SECONDS,
        }
    }
}

/// What happens to a violation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[derive(clap::ValueEnum, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum Mode {
    /// Violations are denied.
    #[default]
    Enforce,
    /// Violations are admitted with the denial text as a warning.
    Warn,
    /// Violations are admitted silently, with an audit annotation and a log line.
    Audit,
}

impl Mode {
    /// The lowercase name used in paths, labels and flags.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// Policy handling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Policy {
    /// Mode for requests whose path names none (`POST /validate`, `POST /mutate`).
    pub default_mode: Mode,
}

/// What to do when a lookup against the Kubernetes API fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FailureMode {
    /// Deny the request, saying the lookup failed and why.
    #[default]
    Deny,
    /// Admit the request with a warning saying the lookup failed and why.
    Allow,
}

/// Lookups against the Kubernetes API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Cluster {
    /// Per-lookup timeout in milliseconds; keep it well under the webhook's `timeoutSeconds`.
    #[schemars(range(min = 1, max = 25_000))]
    pub lookup_timeout_ms: u64,
    /// How long a lookup result is reused, in seconds (0 disables the cache).
    pub cache_ttl_seconds: u64,
    /// How many lookup results the cache holds at most.
    pub cache_max_entries: usize,
    /// `deny` (default) or `allow` when a lookup fails.
    pub failure_mode: FailureMode,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            // The chart's webhook timeoutSeconds is 5: a lookup must leave room for the answer.
            lookup_timeout_ms: 2000,
            cache_ttl_seconds: 5,
            cache_max_entries: 1024,
            failure_mode: FailureMode::Deny,
        }
    }
}

/// Why a configuration could not be used. Messages name the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config file {path}: field `{field}`: {message}")]
    Invalid {
        path: String,
        field: String,
        message: String,
    },
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Parses and validates YAML text; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        // An empty file (or one holding only comments) is the defaults.
        let config: Config = if text.trim().lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l == "---"
        }) {
            Config::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse {
                path: origin.to_owned(),
                message: e.to_string(),
            })?
        };
        config
            .validate()
            .map_err(|(field, message)| ConfigError::Invalid {
                path: origin.to_owned(),
                field,
                message,
            })?;
        Ok(config)
    }

    /// Checks values the types cannot: returns the field path and what is wrong with it.
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_owned(), m));
        self.detection.validate()?;
        let name = &self.mutation.scratch_volume.name;
        // A DNS-1123 label, with room for the "-N" suffix added on collisions.
        if name.is_empty()
            || name.len() > 60
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || name.starts_with('-')
            || name.ends_with('-')
        {
            return err(
                "mutation.scratchVolume.name",
                format!(
                    "{name:?} is not a valid volume name (lowercase letters, digits and '-', at most 60 characters)"
                ),
            );
        }
        let source = &self.mutation.scratch_volume.source;
        if source.len() != 1 {
            return err(
                "mutation.scratchVolume.source",
                format!(
                    "must name exactly one volume source (such as emptyDir or ephemeral), found {}",
                    source.len()
                ),
            );
        }
        // Round-trip through the Kubernetes type: a misspelt source (`emptydir`) is dropped by
        // it, a mistyped field fails it.
        let mut volume = source.clone();
        volume.insert("name".to_owned(), serde_json::json!(name));
        let typed: Volume = serde_json::from_value(serde_json::Value::Object(volume))
            .map_err(|e| ("mutation.scratchVolume.source".to_owned(), e.to_string()))?;
        let known = serde_json::to_value(&typed)
            .ok()
            .and_then(|v| v.as_object().map(|o| o.len()))
            .unwrap_or(0);
        if known != 2 {
            let key = source.keys().next().cloned().unwrap_or_default();
            return err(
                "mutation.scratchVolume.source",
                format!(
                    "{key:?} is not a Kubernetes volume source (such as emptyDir or ephemeral)"
                ),
            );
        }
        if let Some(mtu) = self.mutation.cni_mtu {
            // IPv4 minimum datagram size and the largest jumbo frame in common use.
            if !(576..=9216).contains(&mtu) {
                return err(
                    "mutation.cniMtu",
                    format!("{mtu} is not a usable MTU (576 to 9216)"),
                );
            }
        }
        for (i, t) in self.mutation.tolerations.iter().enumerate() {
            if let Some(op) = &t.operator
                && op != "Exists"
                && op != "Equal"
            {
                return err(
                    &format!("mutation.tolerations[{i}].operator"),
                    format!("{op:?} must be Exists or Equal"),
                );
            }
            if let Some(effect) = &t.effect
                && !["NoSchedule", "PreferNoSchedule", "NoExecute", ""].contains(&effect.as_str())
            {
                return err(
                    &format!("mutation.tolerations[{i}].effect"),
                    format!("{effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"),
                );
            }
        }
        if let Some(a) = &self.mutation.node_affinity
            && a.required_during_scheduling_ignored_during_execution
                .is_none()
            && a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
                .is_none_or(|p| p.is_empty())
        {
            return err(
                "mutation.nodeAffinity",
                "states neither requiredDuringSchedulingIgnoredDuringExecution nor preferredDuringSchedulingIgnoredDuringExecution".to_owned(),
            );
        }
        if self.buildkitd.min_sticky_timeout_seconds < 1
            || self.buildkitd.min_sticky_timeout_seconds > 86_400
        {
            // Kubernetes caps sessionAffinityConfig.clientIP.timeoutSeconds at 86400.
            return err(
                "buildkitd.minStickyTimeoutSeconds",
                format!(
                    "{} must be between 1 and 86400 (the Kubernetes limit)",
                    self.buildkitd.min_sticky_timeout_seconds
                ),
            );
        }
        if self.cluster.lookup_timeout_ms == 0 || self.cluster.lookup_timeout_ms > 25_000 {
            return err(
                "cluster.lookupTimeoutMs",
                format!(
                    "{} must be between 1 and 25000 (webhooks time out after 30 s at most)",
                    self.cluster.lookup_timeout_ms
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_field(yaml: &str) -> String {
        match Config::from_yaml(yaml, "test.yaml") {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = Config::from_yaml("# nothing\n", "t").expect("defaults");
        assert_eq!(c, Config::default());
        assert_eq!(c.buildkitd.min_sticky_timeout_seconds, 600);
        assert_eq!(c.policy.default_mode, Mode::Enforce);
    }

    #[test]
    fn full_example_parses() {
        let yaml = r#"
detection:
  earthlyImages: ["ghcr.io/acme/earthly-runner*"]
  buildkitdImages: ["registry.example.com/buildkit/*"]
mutation:
  scratchVolume:
    name: scratch
    source:
      emptyDir: {sizeLimit: 50Gi}
  cniMtu: 1450
  tolerations:
    - {key: earthly.dev/privileged, operator: Exists, effect: NoSchedule}
  nodeSelector: {earthly.dev/pool: privileged}
buildkitd: {instances: sticky, minStickyTimeoutSeconds: 1200}
policy: {defaultMode: warn}
cluster: {lookupTimeoutMs: 1000, cacheTtlSeconds: 2, cacheMaxEntries: 64, failureMode: allow}
"#;
        let c = Config::from_yaml(yaml, "t").expect("valid");
        assert_eq!(c.mutation.cni_mtu, Some(1450));
        assert_eq!(c.buildkitd.instances, Instances::Sticky);
        assert_eq!(c.cluster.failure_mode, FailureMode::Allow);
        assert_eq!(c.mutation.scratch_volume.name, "scratch");
    }

    #[test]
    fn unknown_field_is_named() {
        let e = Config::from_yaml("mutation:\n  cniMTU: 1450\n", "t")
            .expect_err("unknown field")
            .to_string();
        assert!(e.contains("cniMTU"), "{e}");
    }

    #[test]
    fn impossible_mtu_names_the_field() {
        assert_eq!(invalid_field("mutation: {cniMtu: 12}"), "mutation.cniMtu");
    }

    #[test]
    fn bad_pattern_names_the_field() {
        assert_eq!(
            invalid_field("detection: {buildkitdImages: ['ok/*', 'bad[']}"),
            "detection.buildkitdImages[1]"
        );
    }

    use crate::detect::Family;

    #[test]
    fn bad_earthbuild_pattern_names_the_field() {
        assert_eq!(
            invalid_field("detection: {earthbuildBuildkitdImages: ['bad[']}"),
            "detection.earthbuildBuildkitdImages[0]"
        );
        assert_eq!(
            invalid_field("detection: {earthbuildImages: ['ok', '{a']}"),
            "detection.earthbuildImages[1]"
        );
    }

    #[test]
    fn earthbuild_patterns_parse_next_to_the_old_keys() {
        let c = Config::from_yaml(
            "detection: {earthlyImages: [a], buildkitdImages: [b], earthbuildImages: [c], earthbuildBuildkitdImages: [d]}",
            "t",
        )
        .expect("valid");
        let families: Vec<_> = c
            .detection
            .pattern_lists()
            .iter()
            .map(|(_, l, f, _)| (l[0].clone(), *f))
            .collect();
        assert_eq!(
            families,
            [
                ("b".to_owned(), Family::Earthly),
                ("d".to_owned(), Family::Earthbuild),
                ("a".to_owned(), Family::Earthly),
                ("c".to_owned(), Family::Earthbuild),
            ]
        );
    }

    #[test]
    fn bad_volume_name_names_the_field() {
        assert_eq!(
            invalid_field("mutation: {scratchVolume: {name: Earthly_Tmp}}"),
            "mutation.scratchVolume.name"
        );
    }

    #[test]
    fn two_volume_sources_are_refused() {
        assert_eq!(
            invalid_field(
                "mutation: {scratchVolume: {source: {emptyDir: {}, hostPath: {path: /x}}}}"
            ),
            "mutation.scratchVolume.source"
        );
    }

    #[test]
    fn misspelt_volume_source_is_refused() {
        assert_eq!(
            invalid_field("mutation: {scratchVolume: {source: {emptydir: {}}}}"),
            "mutation.scratchVolume.source"
        );
    }

    #[test]
    fn ephemeral_volume_source_is_accepted() {
        let yaml = "mutation: {scratchVolume: {source: {ephemeral: {volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 50Gi}}}}}}}}";
        assert!(Config::from_yaml(yaml, "t").is_ok());
    }

    #[test]
    fn bad_toleration_operator_names_the_field() {
        assert_eq!(
            invalid_field("mutation: {tolerations: [{key: a, operator: Equals}]}"),
            "mutation.tolerations[0].operator"
        );
    }

    #[test]
    fn sticky_timeout_above_kubernetes_limit_is_refused() {
        assert_eq!(
            invalid_field("buildkitd: {minStickyTimeoutSeconds: 90000}"),
            "buildkitd.minStickyTimeoutSeconds"
        );
    }

    #[test]
    fn unknown_mode_is_a_parse_error() {
        let e = Config::from_yaml("policy: {defaultMode: block}", "t").expect_err("bad mode");
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    }
}
