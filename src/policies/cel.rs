//! Detection as CEL: the image families, the configured globs, the `earthly.dev/role`
//! annotations and the entrypoint's `NO_BUILDKIT` / `BUILDKIT_HOST` rules of `src/detect`,
//! written once as `spec.variables` that every validation (and the mutation) reads.
//!
//! Only the CEL Kubernetes serves is used: the standard macros, `matches()` (RE2) and the
//! strings extension (`split`, `substring`, `lastIndexOf`, `trim`, `replace`).

use super::glob;
use crate::config::Detection;
use crate::detect::{ROLE_ANNOTATION, ROLE_ANNOTATION_PREFIX};
use crate::family::{BUILT_IN, Family, ImageKind};

/// A CEL string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A CEL list of string literals.
pub fn lits<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(lit).collect();
    format!("[{}]", items.join(", "))
}

/// Where a pod spec sits in the object under review, as CEL field paths.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// The object holding `metadata.annotations` and `spec`: `object` for a Pod,
    /// `object.spec.template` for a workload.
    pub root: &'static str,
}

impl Template {
    pub const POD: Template = Template { root: "object" };
    pub const WORKLOAD: Template = Template {
        root: "object.spec.template",
    };
    pub const CRONJOB: Template = Template {
        root: "object.spec.jobTemplate.spec.template",
    };

    fn spec(self) -> String {
        format!("{}.spec", self.root)
    }
}

/// A named CEL variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    pub expression: String,
}

// The distribution project's reference grammar, as `src/image.rs` parses it.
const COMPONENT: &str = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
const DOMAIN: &str = "[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?";
const TAG: &str = "(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?";
const DIGEST: &str =
    "(?:@(?:sha256:[0-9a-fA-F]{64}|sha384:[0-9a-fA-F]{96}|sha512:[0-9a-fA-F]{128}))?";

/// A valid image reference whose repository is `repo` or ends with `/repo` (a mirror).
fn built_in_regex(repo: &str) -> String {
    let repo = repo.replace('.', "\\.");
    format!("^(?:(?:{DOMAIN})/)?(?:{COMPONENT}/)*{repo}{TAG}{DIGEST}$")
}

/// Any valid image reference.
fn valid_regex() -> String {
    format!("^(?:(?:{DOMAIN})/)?{COMPONENT}(?:/{COMPONENT})*{TAG}{DIGEST}$")
}

/// The normalised name (`docker.io/library/x`) of a valid image `i`, as `ImageRef::name`.
fn normalised_name(i: &str) -> String {
    let base = format!("{i}.split('@')[0]");
    let name = format!(
        "({base}.lastIndexOf(':') > {base}.lastIndexOf('/') ? {base}.substring(0, {base}.lastIndexOf(':')) : {base})"
    );
    let first = format!("{name}.split('/')[0]");
    let has_domain = format!(
        "({name}.contains('/') && ({first}.contains('.') || {first}.contains(':') || {first} == 'localhost'))"
    );
    let rest = format!("{name}.substring(size({first}) + 1)");
    let domain = format!("({first} == 'index.docker.io' ? 'docker.io' : {first})");
    format!(
        "({has_domain} ? {domain} + '/' + ({domain} == 'docker.io' && !{rest}.contains('/') ? 'library/' + {rest} : {rest}) \
         : 'docker.io/' + ({name}.contains('/') ? {name} : 'library/' + {name}))"
    )
}

/// The image name messages use for a family and kind: `earthly/buildkitd`, `earthbuild/earthbuild`.
fn kind_name(family: Family, kind: ImageKind) -> &'static str {
    match kind {
        ImageKind::Buildkitd => family.buildkitd_image(),
        ImageKind::Runner => family.runner_image(),
    }
}

/// CEL for the kind of a valid image `i` ('' when not Earthly): built-in repositories first,
/// then the configured globs in the order detection tries them.
fn image_kind(i: &str, detection: &Detection) -> String {
    let mut arms: Vec<(String, &str)> = BUILT_IN
        .iter()
        .map(|(repo, family, kind)| {
            (
                format!("{i}.matches({})", lit(&built_in_regex(repo))),
                kind_name(*family, *kind),
            )
        })
        .collect();
    let name = normalised_name(i);
    for (_, patterns, family, kind) in detection.pattern_lists() {
        if patterns.is_empty() {
            continue;
        }
        let alternatives: Vec<String> = patterns.iter().map(|p| glob::to_regex(p)).collect();
        let re = format!("(?:{})", alternatives.join("|"));
        arms.push((
            format!("{name}.matches({})", lit(&re)),
            kind_name(family, kind),
        ));
    }
    let mut out = "''".to_owned();
    for (test, kind) in arms.into_iter().rev() {
        out = format!("{test} ? {} : {out}", lit(kind));
    }
    format!("({i} == '' ? '' : {out})")
}

/// The variables whose shell test `[ -z "$VAR" ]` decides a runner's role, in the order the
/// `set` list of a container holds them: the entrypoint's two, then the CLI's own.
const SHELL_VARS: [&str; 4] = [
    "NO_BUILDKIT",
    "BUILDKIT_HOST",
    "EARTHLY_BUILDKIT_HOST",
    "EARTH_BUILDKIT_HOST",
];

/// For each of [`SHELL_VARS`], whether the last `env` entry of that name of container `c`
/// makes the shell test false: a non-empty value, or a reference the webhook takes as non-empty.
fn set_vars(c: &str) -> String {
    let entries = format!("{c}.env.filter(e, e.name == v)");
    format!(
        "{}.map(v, has({c}.env) && {c}.env.exists(e, e.name == v) && \
         {entries}.map(e, has(e.valueFrom) || (has(e.value) && e.value != ''))[size({entries}) - 1])",
        lits(SHELL_VARS)
    )
}

fn set_index(var: &str) -> usize {
    SHELL_VARS.iter().position(|v| *v == var).unwrap_or(0)
}

/// The role the image's entrypoint gives a runner container `i.c` of `family`, from `i.set`.
fn entrypoint_role(family: Family) -> String {
    let c = "i.c";
    let entry = "a.contains('earthly-entrypoint.sh')";
    let replaces = format!(
        "(has({c}.command) && size({c}.command) > 0 && !{c}.command.exists(a, {entry}) && !(has({c}.args) && {c}.args.exists(a, {entry})))"
    );
    let cli: Vec<String> = family
        .cli_host_vars()
        .iter()
        .map(|v| format!("i.set[{}]", set_index(v)))
        .collect();
    format!(
        "(i.set[{}] || i.set[{}] || ({replaces} && ({})) ? 'client' : 'all-in-one')",
        set_index("NO_BUILDKIT"),
        set_index("BUILDKIT_HOST"),
        cli.join(" || ")
    )
}

/// The variables of a policy judging the pod spec at `t`. `containers` lists every container,
/// init containers first (the order of `Detector::classify`), as
/// `{'c', 'name', 'init', 'kind', 'family', 'role'}` (`c` the container); `role` is '' for containers that are not
/// Earthly, `family` the image's family (`earthly` when the image is not Earthly's).
pub fn detection(t: Template, detection: &Detection) -> Vec<Variable> {
    let spec = t.spec();
    let root = t.root;
    let valid = lit(&valid_regex());
    let image = format!("(has(c.image) && c.image.matches({valid}) ? c.image : '')");
    let stated = format!(
        "(({p} + i.c.name) in variables.annotations ? variables.annotations[{p} + i.c.name].trim() \
         : !i.init && {w} in variables.annotations ? variables.annotations[{w}].trim() : '')",
        p = lit(ROLE_ANNOTATION_PREFIX),
        w = lit(ROLE_ANNOTATION),
    );
    let kind = image_kind("i.image", detection);
    let runner = entrypoint_role;
    let role = format!(
        "i.stated == 'none' ? '' : i.stated != '' ? i.stated : i.kind == '' ? '' : i.kind.endsWith('/buildkitd') ? 'buildkitd' \
         : i.kind.startsWith('earthbuild/') ? {} : {}",
        runner(Family::Earthbuild),
        runner(Family::Earthly)
    );
    vec![
        Variable {
            name: "annotations",
            expression: format!(
                "has({root}.metadata) && has({root}.metadata.annotations) ? {root}.metadata.annotations : {{}}"
            ),
        },
        Variable {
            name: "images",
            expression: format!(
                "(has({spec}.initContainers) ? {spec}.initContainers.map(c, {{'c': c, 'init': true, 'image': {image}}}) : []) + \
                 (has({spec}.containers) ? {spec}.containers.map(c, {{'c': c, 'init': false, 'image': {image}}}) : [])"
            ),
        },
        Variable {
            name: "kinds",
            expression: format!(
                "variables.images.map(i, {{'c': i.c, 'init': i.init, 'kind': {kind}, 'stated': {stated}, 'set': {}}})",
                set_vars("i.c")
            ),
        },
        Variable {
            name: "containers",
            expression: format!(
                "variables.kinds.map(i, {{'c': i.c, 'name': i.c.name, 'init': i.init, 'kind': i.kind, \
                 'family': i.kind == '' ? 'earthly' : i.kind.split('/')[0], 'role': {role}}})"
            ),
        },
        Variable {
            name: "badRoleKeys",
            expression: bad_role_keys(),
        },
        Variable {
            name: "firstBadRoleKey",
            expression: "size(variables.badRoleKeys) == 0 ? '' : variables.badRoleKeys.filter(k, variables.badRoleKeys.all(o, k <= o))[0]".to_owned(),
        },
        Variable {
            name: "roleError",
            expression: role_error(),
        },
        Variable {
            name: "buildkitd",
            expression: "variables.containers.filter(c, c.role == 'buildkitd')".to_owned(),
        },
    ]
}

/// Rust's `{:?}` of a string, for the characters an annotation value can hold in practice.
fn debug_quoted(s: &str) -> String {
    format!(
        "'\"' + {s}.replace('\\\\', '\\\\\\\\').replace('\"', '\\\\\"').replace('\\n', '\\\\n').replace('\\r', '\\\\r').replace('\\t', '\\\\t') + '\"'"
    )
}

const ROLES: [&str; 4] = ["all-in-one", "buildkitd", "client", "none"];

/// The per-container role annotations detection cannot read: a value that is not a role, or a
/// name that is no container's.
fn bad_role_keys() -> String {
    let a = "variables.annotations";
    format!(
        "{a}.filter(k, k.startsWith({}) && (!({a}[k].trim() in {}) || !variables.images.exists(i, i.c.name == k.substring({}))))",
        lit(ROLE_ANNOTATION_PREFIX),
        lits(ROLES),
        ROLE_ANNOTATION_PREFIX.len()
    )
}

/// The message of `DetectError` for the first annotation detection cannot read ('' when all
/// read): the pod-wide one first, then the per-container ones in key order (`BTreeMap` order,
/// byte-wise as CEL compares strings).
fn role_error() -> String {
    let roles = lits(ROLES);
    let a = "variables.annotations";
    let bad_role = |key: &str| {
        format!(
            "'annotation ' + {key} + ': ' + {} + ' is not a role; use one of all-in-one, buildkitd, client, none'",
            debug_quoted(&format!("{a}[{key}]"))
        )
    };
    let wide = lit(ROLE_ANNOTATION);
    let first = "variables.firstBadRoleKey";
    format!(
        "{wide} in {a} && !({a}[{wide}].trim() in {roles}) ? {} \
         : {first} == '' ? '' \
         : !({a}[{first}].trim() in {roles}) ? {} \
         : 'annotation ' + {first} + ': the pod has no container named \"' + {first}.substring({}) + '\"'",
        bad_role(&wide),
        bad_role(first),
        ROLE_ANNOTATION_PREFIX.len()
    )
}
