//! Recognising Earthly containers: each container of a pod (or pod template) gets a [`Role`]
//! and a [`Family`] from its image, its environment and command (the image's entrypoint rules,
//! in [`entrypoint`]) and the pod's `earthly.dev/role` annotations.

use std::collections::BTreeMap;

use globset::{Glob, GlobSet, GlobSetBuilder};
use k8s_openapi::api::core::v1::{Container, PodSpec};

use crate::config::Detection;
use crate::image::ImageRef;
use crate::rule_id::{RuleId, Warning};

mod entrypoint;

use crate::family::BUILT_IN;
pub use crate::family::Family;
pub(crate) use crate::family::ImageKind;
pub(crate) use entrypoint::{buildkit_host, env_var, is_remote_tcp};

/// Pod annotation stating the role of every entry of `containers`.
pub const ROLE_ANNOTATION: &str = "earthly.dev/role";
/// Prefix of the per-container annotation `earthly.dev/role.<container-name>`, which wins over
/// [`ROLE_ANNOTATION`] and also reaches init containers.
pub const ROLE_ANNOTATION_PREFIX: &str = "earthly.dev/role.";

/// What an Earthly container is, and so what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A runner image whose entrypoint starts its own buildkitd: needs privileges and scratch
    /// space.
    AllInOne,
    /// A buildkitd daemon (`earthly/buildkitd`, `earthly/satellite`, `earthbuild/buildkitd`):
    /// same needs.
    Buildkitd,
    /// A runner image talking to a buildkitd elsewhere (another pod, or a sidecar): needs
    /// nothing.
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
    /// Whose image it is: decides the scratch path and the names messages use.
    pub family: Family,
}

impl Found {
    /// The container this finding is about, in the pod spec it was found in.
    pub fn container<'a>(&self, spec: &'a PodSpec) -> Option<&'a Container> {
        match self.list {
            ContainerList::Containers => spec.containers.get(self.index),
            ContainerList::InitContainers => spec.init_containers.as_ref()?.get(self.index),
        }
    }
}

/// What detection found in a pod spec: the Earthly containers, and notes for the person
/// applying it where a role had to be assumed or differs from what the spec seems to say.
/// Derefs to the containers, for the rules that only need those.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classified {
    pub found: Vec<Found>,
    pub notes: Vec<Warning>,
}

impl std::ops::Deref for Classified {
    type Target = [Found];

    fn deref(&self) -> &[Found] {
        &self.found
    }
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

/// Classifies containers. Built once from the config; cheap to share.
#[derive(Debug, Clone)]
pub struct Detector {
    /// The configured patterns, in the order they are tried: buildkitd before runner images,
    /// Earthly before EarthBuild. Empty sets are left out.
    patterns: Vec<(GlobSet, Family, ImageKind)>,
}

impl Detector {
    /// Compiles the configured patterns.
    pub fn new(config: &Detection) -> Result<Self, globset::Error> {
        let mut patterns = Vec::new();
        for (_, list, family, kind) in config.pattern_lists() {
            if list.is_empty() {
                continue;
            }
            let mut b = GlobSetBuilder::new();
            for p in list {
                b.add(Glob::new(p)?);
            }
            patterns.push((b.build()?, family, kind));
        }
        Ok(Self { patterns })
    }

    fn image_kind(&self, image: &str) -> Option<(Family, ImageKind)> {
        // Unparseable images are not ours to judge: the apiserver and kubelet report them.
        let r = ImageRef::parse(image).ok()?;
        if let Some((_, family, kind)) = BUILT_IN.iter().find(|(repo, ..)| r.repository_is(repo)) {
            return Some((*family, *kind));
        }
        if self.patterns.is_empty() {
            return None;
        }
        let name = r.name();
        self.patterns
            .iter()
            .find(|(set, ..)| set.is_match(&name))
            .map(|(_, family, kind)| (*family, *kind))
    }

    /// The family of a container's image, if it is an Earthly image.
    pub fn family(&self, container: &Container) -> Option<Family> {
        self.image_kind(container.image.as_deref()?).map(|(f, _)| f)
    }

    /// The role of one container judged by its image, environment and command alone.
    pub fn container_role(&self, container: &Container) -> Option<Role> {
        self.judge(container).map(|(role, _, _)| role)
    }

    fn judge(&self, container: &Container) -> Option<(Role, Family, Option<String>)> {
        let (family, kind) = self.image_kind(container.image.as_deref()?)?;
        Some(match kind {
            ImageKind::Buildkitd => (Role::Buildkitd, family, None),
            ImageKind::Runner => {
                let (role, note) = entrypoint::runner_role(container, family);
                (role, family, note)
            }
        })
    }

    /// Every Earthly container of a pod spec, in spec order (`initContainers` first, as the
    /// kubelet starts them), with the notes detection has for the person applying it.
    /// `annotations` are the pod's (or pod template's).
    pub fn classify(
        &self,
        annotations: Option<&BTreeMap<String, String>>,
        spec: &PodSpec,
    ) -> Result<Classified, DetectError> {
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
        let mut out = Classified::default();
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
                let judged = match stated {
                    // An annotation settles the role; the image still says whose it is.
                    Some(Stated::Role(r)) => Some((r, self.family(c).unwrap_or_default(), None)),
                    Some(Stated::None) => None,
                    None => self.judge(c),
                };
                let Some((role, family, note)) = judged else {
                    continue;
                };
                out.notes
                    .extend(note.map(|n| Warning::new(RuleId::RoleAssumed, n)));
                out.found.push(Found {
                    list,
                    index,
                    name: c.name.clone(),
                    role,
                    family,
                });
            }
        }
        out.notes.extend(
            in_pod_clients_without_daemon(spec, &out.found)
                .into_iter()
                .map(|n| Warning::new(RuleId::ClientWithoutBuildkitd, n)),
        );
        Ok(out)
    }
}

/// Notes for clients whose `BUILDKIT_HOST` can only be served from inside the pod (loopback or
/// `unix://`) when no buildkitd runs alongside them: none at all, or only one in a plain init
/// container, which has finished before the client starts. A native sidecar (an init container
/// with `restartPolicy: Always`) or a second container does run alongside.
fn in_pod_clients_without_daemon(spec: &PodSpec, found: &[Found]) -> Vec<String> {
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let alongside = found.iter().any(|f| {
        f.role == Role::Buildkitd
            && match f.list {
                ContainerList::Containers => true,
                ContainerList::InitContainers => init
                    .get(f.index)
                    .is_some_and(|c| c.restart_policy.as_deref() == Some("Always")),
            }
    });
    if alongside {
        return Vec::new();
    }
    found
        .iter()
        .filter(|f| f.role == Role::Client && f.list == ContainerList::Containers)
        .filter_map(|f| {
            let c = spec.containers.get(f.index)?;
            let Some(Some(addr)) = buildkit_host(c) else {
                return None;
            };
            entrypoint::is_in_pod(addr).then(|| {
                format!(
                    "container {}: BUILDKIT_HOST {addr} points inside the pod, but no buildkitd runs alongside it; \
                     run {} next to it (a second container, or an init container with restartPolicy: Always), \
                     or point it at a buildkitd Service",
                    f.name,
                    f.family.buildkitd_image()
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
