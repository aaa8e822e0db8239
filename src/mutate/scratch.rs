//! Where an Earthly container keeps its scratch data, and whether a volume already holds it.

use k8s_openapi::api::core::v1::{Container, VolumeMount};

use crate::detect::{Family, env_var};

/// The scratch path a container wants: the literal value of its family's tmp-dir variable
/// (`EARTHLY_TMP_DIR`; EarthBuild's `EARTH_TMP_DIR`) when that is an absolute path, else the
/// family's default (`/tmp/earthly`, `/tmp/earthbuild`). The second value explains a fallback
/// the user should know about.
pub fn scratch_path(container: &Container, family: Family) -> (String, Option<String>) {
    let default = family.default_scratch_path();
    let Some((var, e)) = family
        .tmp_dir_vars()
        .iter()
        .find_map(|v| env_var(container, v).map(|e| (v, e)))
    else {
        return (default.to_owned(), None);
    };
    if e.value_from.is_some() {
        return (
            default.to_owned(),
            Some(format!(
                "{var} comes from a reference the webhook cannot read"
            )),
        );
    }
    let v = e.value.as_deref().unwrap_or("").trim();
    if v.starts_with('/') {
        (normalise_path(v), None)
    } else {
        (
            default.to_owned(),
            Some(format!("{var} is not an absolute path")),
        )
    }
}

/// `/tmp/earthly/` and `/tmp//earthly` are the same mount point as `/tmp/earthly`.
fn normalise_path(p: &str) -> String {
    let parts: Vec<&str> = path_segments(p).collect();
    format!("/{}", parts.join("/"))
}

/// The segments of a path that name a directory (empty ones and `.` name none).
fn path_segments(p: &str) -> impl Iterator<Item = &str> {
    p.split('/').filter(|s| !s.is_empty() && *s != ".")
}

/// Whether `path` is `dir` or lies below it. Compared segment by segment: no allocation.
fn is_within(path: &str, dir: &str) -> bool {
    let mut p = path_segments(path);
    path_segments(dir).all(|d| p.next() == Some(d))
}

/// The mount that holds `path`, with its index in `volumeMounts`: the deepest one mounted at
/// `path` or at a directory above it. A volume there is storage the user provided (a PVC at
/// `/scratch` for `EARTHLY_TMP_DIR=/scratch/earthly`): no scratch volume goes over it.
pub fn scratch_mount<'a>(container: &'a Container, path: &str) -> Option<(usize, &'a VolumeMount)> {
    container
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter(|(_, m)| is_within(path, &m.mount_path))
        .max_by_key(|(_, m)| path_segments(&m.mount_path).count())
}

/// Whether a volume is mounted at `path` or at a directory above it (see [`scratch_mount`]).
pub fn has_mount_at(container: &Container, path: &str) -> bool {
    scratch_mount(container, path).is_some()
}
