//! Image references: `[registry/]path[:tag][@digest]`, normalised the way the container runtime
//! resolves them (`earthly/earthly` is `docker.io/earthly/earthly`). Parsing is `oci-spec`'s;
//! this module only answers the questions detection asks.

use std::str::FromStr;

use oci_spec::distribution::Reference;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// An image string that is not a valid reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{image:?} is not a valid image reference")]
pub struct ImageError {
    pub image: String,
}

impl ImageRef {
    /// Parses an image reference as the kubelet would see it.
    pub fn parse(image: &str) -> Result<Self, ImageError> {
        let err = || ImageError {
            image: image.to_owned(),
        };
        if image.trim().is_empty() || image.trim() != image {
            return Err(err());
        }
        let r = Reference::from_str(image).map_err(|_| err())?;
        Ok(Self {
            registry: r.registry().to_owned(),
            repository: r.repository().to_owned(),
            tag: r.tag().map(str::to_owned),
            digest: r.digest().map(str::to_owned),
        })
    }

    /// The registry host (and port), `docker.io` when none is given.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `earthly/earthly` or `mirror/earthly/buildkitd`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was given or implied.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository`, without tag or digest: what configured patterns match against.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// True when the repository is `path` or ends with `/path`: `earthly/buildkitd` matches
    /// `docker.io/earthly/buildkitd` and a mirror's `mirror/earthly/buildkitd`, but not
    /// `notearthly/buildkitd`.
    pub fn repository_is(&self, path: &str) -> bool {
        let repo = self.repository.as_str();
        repo == path
            || repo
                .strip_suffix(path)
                .is_some_and(|prefix| prefix.ends_with('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ImageRef {
        ImageRef::parse(s).expect("valid reference")
    }

    #[test]
    fn short_name_resolves_to_docker_hub() {
        let r = parse("earthly/earthly:v0.8.15");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "earthly/earthly");
        assert_eq!(r.tag(), Some("v0.8.15"));
        assert_eq!(r.name(), "docker.io/earthly/earthly");
    }

    #[test]
    fn untagged_name_parses() {
        let r = parse("earthly/buildkitd");
        assert_eq!(r.repository(), "earthly/buildkitd");
        assert_eq!(r.digest(), None);
    }

    #[test]
    fn explicit_docker_hub_matches_short_name() {
        assert_eq!(
            parse("docker.io/earthly/earthly").name(),
            parse("earthly/earthly").name()
        );
    }

    #[test]
    fn mirror_with_port_and_digest_parses() {
        let r = parse(
            "registry.example.com:5000/mirror/earthly/buildkitd@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        );
        assert_eq!(r.registry(), "registry.example.com:5000");
        assert_eq!(r.repository(), "mirror/earthly/buildkitd");
        assert!(r.digest().is_some_and(|d| d.starts_with("sha256:")));
        assert!(r.repository_is("earthly/buildkitd"));
    }

    #[test]
    fn repository_suffix_must_be_a_whole_path_segment() {
        assert!(!parse("notearthly/buildkitd").repository_is("earthly/buildkitd"));
        assert!(!parse("earthly/buildkitd-exporter").repository_is("earthly/buildkitd"));
    }

    #[test]
    fn official_image_gets_library_prefix() {
        assert_eq!(parse("busybox").repository(), "library/busybox");
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in ["", " earthly/earthly", "a//b", "earthly/earthly:"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
