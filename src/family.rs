//! The image families the webhook knows: Earthly's own images and those of EarthBuild, the
//! community fork where Earthly development continues. Both share the Kubernetes guide and the
//! entrypoint's `NO_BUILDKIT` / `BUILDKIT_HOST` rules; they differ in where the scratch data goes
//! and in the names of their variables.

/// Which project an Earthly container's image comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Family {
    /// `earthly/earthly`, `earthly/buildkitd`, `earthly/satellite`.
    #[default]
    Earthly,
    /// `earthbuild/earthbuild`, `earthbuild/buildkitd`.
    Earthbuild,
}

/// What an image runs: the CLI with its entrypoint (an all-in-one runner or a remote client,
/// as its environment says) or a buildkitd daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImageKind {
    Runner,
    Buildkitd,
}

/// Repositories each family publishes, matched as whole trailing path segments so mirrors
/// (`registry.example.com/mirror/earthly/buildkitd`) are recognised too.
pub(crate) const BUILT_IN: &[(&str, Family, ImageKind)] = &[
    ("earthly/buildkitd", Family::Earthly, ImageKind::Buildkitd),
    ("earthly/satellite", Family::Earthly, ImageKind::Buildkitd),
    (
        "earthbuild/buildkitd",
        Family::Earthbuild,
        ImageKind::Buildkitd,
    ),
    ("earthly/earthly", Family::Earthly, ImageKind::Runner),
    (
        "earthbuild/earthbuild",
        Family::Earthbuild,
        ImageKind::Runner,
    ),
];

impl Family {
    /// The runner image, as messages name it.
    pub fn runner_image(self) -> &'static str {
        match self {
            Family::Earthly => "earthly/earthly",
            Family::Earthbuild => "earthbuild/earthbuild",
        }
    }

    /// The buildkitd image, as messages name it ("earthbuild/buildkitd does not support
    /// multi-node setups").
    pub fn buildkitd_image(self) -> &'static str {
        match self {
            Family::Earthly => "earthly/buildkitd",
            Family::Earthbuild => "earthbuild/buildkitd",
        }
    }

    /// Where the scratch data goes when the tmp-dir variable is not set (Earthly's Kubernetes
    /// guide: `/tmp/earthly`; EarthBuild's: `/tmp/earthbuild`).
    pub fn default_scratch_path(self) -> &'static str {
        match self {
            Family::Earthly => "/tmp/earthly",
            Family::Earthbuild => "/tmp/earthbuild",
        }
    }

    /// The variables that move the scratch directory, first one set wins. EarthBuild reads
    /// `EARTH_*` and still falls back to the deprecated `EARTHLY_*` name (its `earth_env`).
    pub fn tmp_dir_vars(self) -> &'static [&'static str] {
        match self {
            Family::Earthly => &["EARTHLY_TMP_DIR"],
            Family::Earthbuild => &["EARTH_TMP_DIR", "EARTHLY_TMP_DIR"],
        }
    }

    /// The variables the CLI itself reads for its buildkit address. The entrypoint overwrites
    /// them when it runs; only a container whose `command` replaces the entrypoint keeps them.
    pub fn cli_host_vars(self) -> &'static [&'static str] {
        match self {
            Family::Earthly => &["EARTHLY_BUILDKIT_HOST"],
            Family::Earthbuild => &["EARTH_BUILDKIT_HOST", "EARTHLY_BUILDKIT_HOST"],
        }
    }
}
