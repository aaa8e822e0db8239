//! The `detection` section of the policy file: extra image patterns per family and kind.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::family::{Family, ImageKind};

/// Extra image patterns per role and family, for custom images. Patterns are globs (`*`, `?`,
/// `[...]`, `{a,b}`) matched against the normalised image name without tag or digest,
/// e.g. `docker.io/earthly/earthly` or `ghcr.io/acme/ci/earthly-runner`. The family decides
/// the default scratch path and the tmp-dir variable (`/tmp/earthly` and `EARTHLY_TMP_DIR` for
/// Earthly, `/tmp/earthbuild` and `EARTH_TMP_DIR` for EarthBuild).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Detection {
    /// Runner images of the Earthly family, like `earthly/earthly`: all-in-one runners or
    /// remote clients, as the entrypoint's rules decide from their environment.
    pub earthly_images: Vec<String>,
    /// buildkitd images of the Earthly family, like `earthly/buildkitd` and `earthly/satellite`.
    pub buildkitd_images: Vec<String>,
    /// Runner images of the EarthBuild family, like `earthbuild/earthbuild`.
    pub earthbuild_images: Vec<String>,
    /// buildkitd images of the EarthBuild family, like `earthbuild/buildkitd`.
    pub earthbuild_buildkitd_images: Vec<String>,
}

/// A pattern list with its field name, family and image kind.
pub(crate) type PatternList<'a> = (&'static str, &'a [String], Family, ImageKind);

impl Detection {
    /// Each pattern list, in the order detection tries them: buildkitd before runner images,
    /// Earthly before EarthBuild.
    pub(crate) fn pattern_lists(&self) -> [PatternList<'_>; 4] {
        [
            (
                "detection.buildkitdImages",
                &self.buildkitd_images,
                Family::Earthly,
                ImageKind::Buildkitd,
            ),
            (
                "detection.earthbuildBuildkitdImages",
                &self.earthbuild_buildkitd_images,
                Family::Earthbuild,
                ImageKind::Buildkitd,
            ),
            (
                "detection.earthlyImages",
                &self.earthly_images,
                Family::Earthly,
                ImageKind::Runner,
            ),
            (
                "detection.earthbuildImages",
                &self.earthbuild_images,
                Family::Earthbuild,
                ImageKind::Runner,
            ),
        ]
    }

    /// Every pattern compiles; else the field (`detection.earthlyImages[1]`) and why.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        for (field, patterns, ..) in self.pattern_lists() {
            for (i, p) in patterns.iter().enumerate() {
                if let Err(e) = globset::Glob::new(p) {
                    return Err((
                        format!("{field}[{i}]"),
                        format!("invalid pattern {p:?}: {e}"),
                    ));
                }
            }
        }
        Ok(())
    }
}
