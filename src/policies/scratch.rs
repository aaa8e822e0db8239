//! Where an Earthly container keeps its scratch data, as CEL: `mutate::scratch_path` and
//! `mutate::has_mount_at`, for the mutation and the scratch-volume warning. Plain CEL (no
//! `lists.range`), so the validating policies can use it on Kubernetes 1.30.

use super::cel::{lit, lits};
use crate::family::Family;

/// The segments of a path that name a directory, joined as `/a/b/` (`/` for none).
fn joined(path: &str) -> String {
    format!(
        "('/' + {path}.split('/').filter(x, x != '' && x != '.').join('/') + '/').replace('//', '/')"
    )
}

/// The scratch path of container `c` of family `family` (CEL expressions): the last `env` entry
/// of the family's first tmp-dir variable that has one, when a literal absolute path
/// (normalised), else the family's default.
pub fn path(c: &str, family: &str) -> String {
    let vars = format!(
        "({family} == 'earthbuild' ? {} : {})",
        lits(Family::Earthbuild.tmp_dir_vars().iter().copied()),
        lits(Family::Earthly.tmp_dir_vars().iter().copied())
    );
    let first = format!("{vars}.filter(v, has({c}.env) && {c}.env.exists(ev, ev.name == v))");
    let entries = format!("{c}.env.filter(ev, ev.name == {first}[0])");
    let last = format!("{entries}[size({entries}) - 1]");
    let default = format!(
        "({family} == 'earthbuild' ? {} : {})",
        lit(Family::Earthbuild.default_scratch_path()),
        lit(Family::Earthly.default_scratch_path())
    );
    format!(
        "(size({first}) == 0 || has({last}.valueFrom) || !(has({last}.value) && {last}.value.trim().startsWith('/')) ? {default} \
         : '/' + {last}.value.trim().split('/').filter(x, x != '' && x != '.').join('/'))"
    )
}

/// Whether container `c` has a volume mounted at `path` or at a directory above it: its
/// segments start with the mount's (compared as `/a/b/` strings, the segments holding no `/`).
pub fn mounted(c: &str, path: &str) -> String {
    format!(
        "(has({c}.volumeMounts) && {c}.volumeMounts.exists(m, {}.startsWith({})))",
        joined(path),
        joined("m.mountPath")
    )
}
