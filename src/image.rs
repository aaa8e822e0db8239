//! Image references: `[registry/]path[:tag][@digest]`, normalised the way the container runtime
//! resolves them (`earthly/earthly` is `docker.io/earthly/earthly`). The grammar is the one of
//! the distribution project's `reference` package that containerd and the kubelet use, parsed by
//! hand: the regular expression `oci-spec` compiles for it cost 60 ms on the first request and
//! 30 µs per image after that, more than the rest of a review together. A property test checks
//! this parser against `oci-spec` on generated references.

/// Longest repository path accepted (the distribution project's `NameTotalLengthMax`).
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";

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
        if image.is_empty() || image.trim() != image {
            return Err(err());
        }
        // `@` appears nowhere but before the digest; a tag is after the last `:` unless a `/`
        // follows it (then the `:` is a registry port).
        let (rest, digest) = match image.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (image, None),
        };
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
                (&rest[..colon], Some(&rest[colon + 1..]))
            }
            _ => (rest, None),
        };
        if !tag.is_none_or(valid_tag) || !digest.is_none_or(valid_digest) || !valid_name(name) {
            return Err(err());
        }
        let (registry, repository) = split_domain(name);
        if repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(err());
        }
        Ok(Self {
            registry: registry.to_owned(),
            repository,
            // Neither tag nor digest means `latest`.
            tag: match (tag, digest) {
                (None, None) => Some("latest".to_owned()),
                (t, _) => t.map(str::to_owned),
            },
            digest: digest.map(str::to_owned),
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

/// `[a-z0-9]+` runs joined by one separator each: `.`, `_`, `__` or any number of `-`.
fn valid_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &b[start..i];
        if !(sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|&c| c == b'-')) {
            return false;
        }
    }
    true
}

/// A host name (`[a-zA-Z0-9]` runs joined by `-`, labels joined by `.`) with an optional port.
fn valid_domain(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    host.split('.').all(label)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

/// `[domain/]component(/component)*`; the first segment is a domain only when more follow.
fn valid_name(name: &str) -> bool {
    let mut segments = name.split('/');
    let first = segments.next().unwrap_or("");
    let mut rest = segments.peekable();
    if rest.peek().is_none() {
        return valid_path_component(first);
    }
    (valid_domain(first) || valid_path_component(first)) && rest.all(valid_path_component)
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (Go's `\w` is ASCII).
fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(&b[0])
        && b[1..].iter().all(|c| word(c) || *c == b'.' || *c == b'-')
}

/// A digest of a registered algorithm with its exact hex length.
fn valid_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Splits a validated name into registry and repository the way Docker normalises it: a first
/// segment is a registry only if it has a `.` or `:` or is `localhost`; Docker Hub's official
/// images get `library/`.
fn split_domain(name: &str) -> (&str, String) {
    let (mut domain, remainder) = match name.split_once('/') {
        Some((left, right)) if left.contains(['.', ':']) || left == "localhost" => (left, right),
        _ => (DOCKER_HUB, name),
    };
    if domain == DOCKER_HUB_LEGACY {
        domain = DOCKER_HUB;
    }
    let repository = if domain == DOCKER_HUB && !remainder.contains('/') {
        format!("library/{remainder}")
    } else {
        remainder.to_owned()
    };
    (domain, repository)
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

    #[test]
    fn legacy_docker_hub_name_is_docker_io() {
        let r = parse("index.docker.io/earthly/earthly");
        assert_eq!(r.name(), "docker.io/earthly/earthly");
    }

    #[test]
    fn port_without_path_is_a_tag() {
        let r = parse("test.com:5000");
        assert_eq!(r.repository(), "library/test.com");
        assert_eq!(r.tag(), Some("5000"));
    }

    #[test]
    fn digest_must_have_the_length_of_its_algorithm() {
        assert!(ImageRef::parse("earthly/earthly@sha256:0123").is_err());
        assert!(ImageRef::parse("earthly/earthly@md5:0123456789abcdef0123456789abcdef").is_err());
    }

    mod against_oci_spec {
        use super::*;
        use proptest::prelude::*;
        use std::str::FromStr;

        /// Strings made of the pieces references are made of, valid and not.
        fn reference() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                "[a-z0-9]{1,6}",
                "[A-Za-z0-9]{1,4}",
                Just("earthly".to_owned()),
                Just("buildkitd".to_owned()),
                Just("localhost".to_owned()),
                Just("registry.example.com".to_owned()),
                Just("index.docker.io".to_owned()),
                Just("docker.io".to_owned()),
                prop_oneof![
                    Just("/"),
                    Just(":"),
                    Just("."),
                    Just("_"),
                    Just("__"),
                    Just("-"),
                    Just("--"),
                    Just("@"),
                    Just(":5000"),
                    Just("-."),
                    Just("a..b"),
                    Just(" ")
                ]
                .prop_map(str::to_owned),
                Just(
                    "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                        .to_owned()
                ),
                Just("@sha512:0123456789abcdef0123456789abcdef".to_owned()),
                "[a-zA-Z0-9_.-]{1,8}",
            ];
            proptest::collection::vec(piece, 1..8).prop_map(|p| p.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(5_000))]
            #[test]
            fn parses_like_oci_spec(image in reference()) {
                let ours = ImageRef::parse(&image).ok();
                let theirs = oci_spec::distribution::Reference::from_str(&image)
                    .ok()
                    .filter(|_| image.trim() == image);
                match (ours, theirs) {
                    (None, None) => {}
                    (Some(o), Some(t)) => {
                        prop_assert_eq!(o.registry(), t.registry());
                        prop_assert_eq!(o.repository(), t.repository());
                        prop_assert_eq!(o.tag(), t.tag());
                        prop_assert_eq!(o.digest(), t.digest());
                    }
                    (o, t) => prop_assert!(false, "{:?}: ours {:?}, oci-spec {:?}", image, o, t.map(|t| t.whole())),
                }
            }
        }
    }
}
