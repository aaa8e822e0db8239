//! Recognising Earthly containers: each container of a pod (or pod template) gets a [`Role`]
//! from its image, its environment and the pod's `earthly.dev/role` annotations.

use std::collections::BTreeMap;

use globset::{Glob, GlobSet, GlobSetBuilder};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};

use crate::config::Detection;
use crate::image::ImageRef;

/// Pod annotation stating the role of every entry of `containers`.
pub const ROLE_ANNOTATION: &str = "earthly.dev/role";
/// Prefix of the per-container annotation `earthly.dev/role.<container-name>`, which wins over
/// [`ROLE_ANNOTATION`] and also reaches init containers.
pub const ROLE_ANNOTATION_PREFIX: &str = "earthly.dev/role.";

/// What an Earthly container is, and so what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `earthly/earthly` running its own buildkitd: needs privileges and scratch space.
    AllInOne,
    /// A buildkitd daemon (`earthly/buildkitd`, `earthly/satellite`): same needs.
    Buildkitd,
    /// `earthly/earthly` talking to a remote buildkitd: needs nothing.
    Client,
}

impl Role {
    /// Whether the container must run privileged with a scratch volume.
    pub fn needs_privileges(self) -> bool {
        matches!(self, Role::AllInOne | Role::Buildkitd)
    }

    /// Short human name, used in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Role::AllInOne => "all-in-one Earthly runner",
            Role::Buildkitd => "buildkitd",
            Role::Client => "Earthly remote client",
        }
    }
}

/// Which list of the pod spec a container sits in; its JSON name is part of patch paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerList {
    Containers,
    InitContainers,
}

impl ContainerList {
    /// The field name in the pod spec.
    pub fn field(self) -> &'static str {
        match self {
            ContainerList::Containers => "containers",
            ContainerList::InitContainers => "initContainers",
        }
    }
}

/// An Earthly container found in a pod spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub list: ContainerList,
    pub index: usize,
    pub name: String,
    pub role: Role,
}

/// A pod whose role annotations cannot be understood. The message names the annotation and the
/// values it takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error(
        "annotation {key}: {value:?} is not a role; use one of all-in-one, buildkitd, client, none"
    )]
    BadRole { key: String, value: String },
    #[error("annotation {key}: the pod has no container named {name:?}")]
    NoSuchContainer { key: String, name: String },
}

/// A role as an annotation states it: `none` denies that the container is Earthly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stated {
    Role(Role),
    None,
}

fn parse_stated(key: &str, value: &str) -> Result<Stated, DetectError> {
    match value.trim() {
        "all-in-one" => Ok(Stated::Role(Role::AllInOne)),
        "buildkitd" => Ok(Stated::Role(Role::Buildkitd)),
        "client" => Ok(Stated::Role(Role::Client)),
        "none" => Ok(Stated::None),
        _ => Err(DetectError::BadRole {
            key: key.to_owned(),
            value: value.to_owned(),
        }),
    }
}

/// Which family an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageFamily {
    /// `earthly/earthly` and configured runner images: all-in-one or client, by environment.
    Earthly,
    /// `earthly/buildkitd`, `earthly/satellite` and configured buildkitd images.
    Buildkitd,
}

/// Classifies containers. Built once from the config; cheap to share.
#[derive(Debug, Clone)]
pub struct Detector {
    earthly: GlobSet,
    buildkitd: GlobSet,
}

/// Repositories of the images upstream publishes, matched as whole trailing path segments so
/// mirrors (`registry.example.com/mirror/earthly/buildkitd`) are recognised too.
const EARTHLY_REPOSITORIES: &[&str] = &["earthly/earthly"];
const BUILDKITD_REPOSITORIES: &[&str] = &["earthly/buildkitd", "earthly/satellite"];

impl Detector {
    /// Compiles the configured patterns.
    pub fn new(config: &Detection) -> Result<Self, globset::Error> {
        fn build(patterns: &[String]) -> Result<GlobSet, globset::Error> {
            let mut b = GlobSetBuilder::new();
            for p in patterns {
                b.add(Glob::new(p)?);
            }
            b.build()
        }
        // oci-spec compiles its reference regex on first use (hundreds of ms in a debug
        // build): pay that at start-up, not on the first pod the apiserver sends.
        let _ = ImageRef::parse("earthly/earthly");
        Ok(Self {
            earthly: build(&config.earthly_images)?,
            buildkitd: build(&config.buildkitd_images)?,
        })
    }

    fn family(&self, image: &str) -> Option<ImageFamily> {
        // Unparseable images are not ours to judge: the apiserver and kubelet report them.
        let r = ImageRef::parse(image).ok()?;
        if BUILDKITD_REPOSITORIES.iter().any(|p| r.repository_is(p)) {
            return Some(ImageFamily::Buildkitd);
        }
        if EARTHLY_REPOSITORIES.iter().any(|p| r.repository_is(p)) {
            return Some(ImageFamily::Earthly);
        }
        if self.buildkitd.is_empty() && self.earthly.is_empty() {
            return None;
        }
        let name = r.name();
        if self.buildkitd.is_match(&name) {
            Some(ImageFamily::Buildkitd)
        } else if self.earthly.is_match(&name) {
            Some(ImageFamily::Earthly)
        } else {
            None
        }
    }

    /// The role of one container judged by its image and environment alone.
    pub fn container_role(&self, container: &Container) -> Option<Role> {
        match self.family(container.image.as_deref()?)? {
            ImageFamily::Buildkitd => Some(Role::Buildkitd),
            ImageFamily::Earthly if uses_remote_buildkit(container) => Some(Role::Client),
            ImageFamily::Earthly => Some(Role::AllInOne),
        }
    }

    /// Every Earthly container of a pod spec, in spec order (`initContainers` first, as the
    /// kubelet starts them). `annotations` are the pod's (or pod template's).
    pub fn classify(
        &self,
        annotations: Option<&BTreeMap<String, String>>,
        spec: &PodSpec,
    ) -> Result<Vec<Found>, DetectError> {
        let empty = BTreeMap::new();
        let annotations = annotations.unwrap_or(&empty);
        let pod_wide = annotations
            .get(ROLE_ANNOTATION)
            .map(|v| parse_stated(ROLE_ANNOTATION, v))
            .transpose()?;
        let lists = [
            (
                ContainerList::InitContainers,
                spec.init_containers.as_deref().unwrap_or_default(),
            ),
            (ContainerList::Containers, spec.containers.as_slice()),
        ];
        // Per-container annotations must name a container that exists: a typo would otherwise
        // silently leave a runner unprivileged.
        for (key, value) in annotations.range(ROLE_ANNOTATION_PREFIX.to_owned()..) {
            let Some(name) = key.strip_prefix(ROLE_ANNOTATION_PREFIX) else {
                break;
            };
            parse_stated(key, value)?;
            if !lists
                .iter()
                .any(|(_, cs)| cs.iter().any(|c| c.name == name))
            {
                return Err(DetectError::NoSuchContainer {
                    key: key.clone(),
                    name: name.to_owned(),
                });
            }
        }
        let mut found = Vec::new();
        for (list, containers) in lists {
            for (index, c) in containers.iter().enumerate() {
                let per_container = annotations
                    .get(&format!("{ROLE_ANNOTATION_PREFIX}{}", c.name))
                    .map(|v| parse_stated(ROLE_ANNOTATION_PREFIX, v))
                    .transpose()?;
                let stated = per_container.or(match list {
                    ContainerList::Containers => pod_wide,
                    ContainerList::InitContainers => None,
                });
                let role = match stated {
                    Some(Stated::Role(r)) => Some(r),
                    Some(Stated::None) => None,
                    None => self.container_role(c),
                };
                if let Some(role) = role {
                    found.push(Found {
                        list,
                        index,
                        name: c.name.clone(),
                        role,
                    });
                }
            }
        }
        Ok(found)
    }
}

/// The literal value of an env var, or `Some("")`-like presence for `valueFrom`.
pub(crate) fn env_var<'a>(container: &'a Container, name: &str) -> Option<&'a EnvVar> {
    // The last definition wins in Kubernetes, as in a shell.
    container
        .env
        .as_deref()?
        .iter()
        .rev()
        .find(|e| e.name == name)
}

/// Whether an env var is set to something truthy (`NO_BUILDKIT=1`, `true`, any non-empty value
/// other than `0`/`false`), or set from a reference we cannot read.
fn env_is_set(container: &Container, name: &str) -> bool {
    env_var(container, name).is_some_and(|e| match (&e.value, &e.value_from) {
        (_, Some(_)) => true,
        (Some(v), None) => {
            let v = v.trim();
            !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")
        }
        (None, None) => false,
    })
}

/// The buildkit address the earthly client is given, if any: `Some(None)` when it comes from a
/// reference (ConfigMap, Secret) this webhook cannot read.
pub(crate) fn buildkit_host(container: &Container) -> Option<Option<&str>> {
    ["BUILDKIT_HOST", "EARTHLY_BUILDKIT_HOST"]
        .iter()
        .find_map(|n| env_var(container, n))
        .map(|e| match (&e.value, &e.value_from) {
            (_, Some(_)) => None,
            (v, None) => Some(v.as_deref().unwrap_or("")),
        })
}

/// Whether a `tcp://` address points away from the pod itself.
pub(crate) fn is_remote_tcp(address: &str) -> bool {
    let Some(rest) = address.trim().strip_prefix("tcp://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    !(host.is_empty()
        || host.eq_ignore_ascii_case("localhost")
        || host.starts_with("127.")
        || host == "::1"
        || host == "0.0.0.0")
}

/// An `earthly/earthly` container that does not start its own buildkitd.
fn uses_remote_buildkit(container: &Container) -> bool {
    if env_is_set(container, "NO_BUILDKIT") {
        return true;
    }
    match buildkit_host(container) {
        // Set from a ConfigMap or Secret: the author pointed it somewhere on purpose.
        Some(None) => true,
        Some(Some(addr)) => is_remote_tcp(addr),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Detection;

    fn container(name: &str, image: &str, env: &[(&str, &str)]) -> Container {
        Container {
            name: name.to_owned(),
            image: Some(image.to_owned()),
            env: (!env.is_empty()).then(|| {
                env.iter()
                    .map(|(k, v)| EnvVar {
                        name: (*k).to_owned(),
                        value: Some((*v).to_owned()),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        }
    }

    fn detector() -> Detector {
        Detector::new(&Detection::default()).expect("default patterns")
    }

    fn role(c: Container) -> Option<Role> {
        detector().container_role(&c)
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn earthly_image_without_remote_is_all_in_one() {
        assert_eq!(
            role(container("e", "earthly/earthly:v0.8.15", &[])),
            Some(Role::AllInOne)
        );
    }

    #[test]
    fn buildkitd_image_is_buildkitd() {
        assert_eq!(
            role(container("b", "docker.io/earthly/buildkitd", &[])),
            Some(Role::Buildkitd)
        );
    }

    #[test]
    fn satellite_image_is_buildkitd() {
        assert_eq!(
            role(container("s", "earthly/satellite:v0.8.0", &[])),
            Some(Role::Buildkitd)
        );
    }

    #[test]
    fn mirrored_buildkitd_by_digest_is_buildkitd() {
        let image = "registry.example.com:5000/mirror/earthly/buildkitd@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(role(container("b", image, &[])), Some(Role::Buildkitd));
    }

    #[test]
    fn remote_tcp_buildkit_host_makes_a_client() {
        let c = container(
            "e",
            "earthly/earthly:v0.5.20",
            &[(
                "BUILDKIT_HOST",
                "tcp://earthly-buildkitd.default.svc.cluster.local:8372",
            )],
        );
        assert_eq!(role(c), Some(Role::Client));
    }

    #[test]
    fn earthly_buildkit_host_also_makes_a_client() {
        let c = container(
            "e",
            "earthly/earthly",
            &[("EARTHLY_BUILDKIT_HOST", "tcp://10.0.0.7:8372")],
        );
        assert_eq!(role(c), Some(Role::Client));
    }

    #[test]
    fn loopback_buildkit_host_is_still_all_in_one() {
        let c = container(
            "e",
            "earthly/earthly",
            &[("BUILDKIT_HOST", "tcp://127.0.0.1:8372")],
        );
        assert_eq!(role(c), Some(Role::AllInOne));
    }

    #[test]
    fn no_buildkit_makes_a_client() {
        let c = container("e", "earthly/earthly", &[("NO_BUILDKIT", "1")]);
        assert_eq!(role(c), Some(Role::Client));
    }

    #[test]
    fn no_buildkit_false_is_not_set() {
        let c = container("e", "earthly/earthly", &[("NO_BUILDKIT", "false")]);
        assert_eq!(role(c), Some(Role::AllInOne));
    }

    #[test]
    fn unrelated_image_is_untouched() {
        assert_eq!(role(container("n", "nginx:1.27", &[])), None);
        assert_eq!(role(container("n", "notearthly/earthly", &[])), None);
    }

    #[test]
    fn configured_pattern_recognises_custom_runner() {
        let d = Detector::new(&Detection {
            earthly_images: vec!["ghcr.io/acme/earthly-runner*".to_owned()],
            buildkitd_images: vec!["*/buildkit/*".to_owned()],
        })
        .expect("patterns");
        let runner = container("r", "ghcr.io/acme/earthly-runner-go:1.2", &[]);
        let bk = container("b", "registry.example.com/buildkit/daemon:3", &[]);
        assert_eq!(d.container_role(&runner), Some(Role::AllInOne));
        assert_eq!(d.container_role(&bk), Some(Role::Buildkitd));
    }

    #[test]
    fn annotation_states_role_for_all_containers() {
        let spec = PodSpec {
            containers: vec![container("runner", "ghcr.io/acme/ci:1", &[])],
            ..Default::default()
        };
        let found = detector()
            .classify(
                Some(&annotations(&[("earthly.dev/role", "all-in-one")])),
                &spec,
            )
            .expect("valid");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].role, Role::AllInOne);
    }

    #[test]
    fn annotation_none_denies_the_role() {
        let spec = PodSpec {
            containers: vec![container("e", "earthly/earthly", &[])],
            ..Default::default()
        };
        let found = detector()
            .classify(Some(&annotations(&[("earthly.dev/role", "none")])), &spec)
            .expect("valid");
        assert!(found.is_empty());
    }

    #[test]
    fn per_container_annotation_wins_over_pod_wide() {
        let spec = PodSpec {
            containers: vec![
                container("bk", "ghcr.io/acme/bk:1", &[]),
                container("sidecar", "ghcr.io/acme/log:1", &[]),
            ],
            ..Default::default()
        };
        let found = detector()
            .classify(
                Some(&annotations(&[
                    ("earthly.dev/role", "none"),
                    ("earthly.dev/role.bk", "buildkitd"),
                ])),
                &spec,
            )
            .expect("valid");
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].name.as_str(), found[0].role),
            ("bk", Role::Buildkitd)
        );
    }

    #[test]
    fn bad_annotation_value_is_an_error_naming_it() {
        let spec = PodSpec::default();
        let err = detector()
            .classify(
                Some(&annotations(&[("earthly.dev/role", "privileged")])),
                &spec,
            )
            .expect_err("bad role");
        assert!(err.to_string().contains("earthly.dev/role"), "{err}");
        assert!(
            err.to_string()
                .contains("all-in-one, buildkitd, client, none"),
            "{err}"
        );
    }

    #[test]
    fn annotation_for_missing_container_is_an_error() {
        let spec = PodSpec {
            containers: vec![container("a", "nginx", &[])],
            ..Default::default()
        };
        let err = detector()
            .classify(
                Some(&annotations(&[("earthly.dev/role.b", "buildkitd")])),
                &spec,
            )
            .expect_err("no container b");
        assert!(matches!(err, DetectError::NoSuchContainer { .. }));
    }

    #[test]
    fn init_containers_are_classified_too() {
        let spec = PodSpec {
            init_containers: Some(vec![container("warm", "earthly/earthly", &[])]),
            containers: vec![container("app", "nginx", &[])],
            ..Default::default()
        };
        let found = detector().classify(None, &spec).expect("valid");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].list, ContainerList::InitContainers);
    }

    #[test]
    fn remote_tcp_recognises_hosts() {
        assert!(is_remote_tcp("tcp://buildkitd:8372"));
        assert!(is_remote_tcp("tcp://[fd00::1]:8372"));
        assert!(!is_remote_tcp("tcp://[::1]:8372"));
        assert!(!is_remote_tcp("tcp://localhost:8372"));
        assert!(!is_remote_tcp("unix:///run/buildkit.sock"));
    }
}
