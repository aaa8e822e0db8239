//! The footgun warnings of `rules::footguns` as Warn-only validations: one policy per resource
//! family, bound with `validationActions: [Warn]` in every opted-in namespace (the webhook warns
//! whatever the mode). Each validation gives one warning per kind of footgun, naming every
//! container that has it (the webhook gives one per container; the text of each is the same,
//! joined with "; ").

use super::cel::{Variable, lit, lits};
use super::scratch;
use super::validating::{Policy, Validation};

/// `has(c.env)` and the value of the last entry named `var` is one of `words` (trimmed, ASCII
/// case-insensitive), as `footguns::is_true` / `is_false` read it.
fn env_is(c: &str, var: &str, words: [&str; 3]) -> String {
    let entries = format!("{c}.env.filter(x, x.name == {})", lit(var));
    let last = format!("{entries}[size({entries}) - 1]");
    format!(
        "(has({c}.env) && size({entries}) > 0 && has({last}.value) && {last}.value.trim().lowerAscii() in {})",
        lits(words)
    )
}

const TRUE: [&str; 3] = ["true", "1", "yes"];
const FALSE: [&str; 3] = ["false", "0", "no"];

/// Whether a `tcp://` address points away from the pod (`detect::is_remote_tcp`).
fn remote_tcp(a: &str) -> String {
    let t = format!("{a}.trim()");
    let hp = format!("{t}.substring(6).split('/')[0].split('?')[0]");
    let host = format!(
        "({hp}.startsWith('[') ? {hp}.substring(1).split(']')[0] : {hp}.contains(':') ? {hp}.substring(0, {hp}.lastIndexOf(':')) : {hp})"
    );
    format!(
        "({t}.startsWith('tcp://') && !({host} == '' || {host}.lowerAscii() == 'localhost' || {host}.startsWith('127.') || {host} == '::1' || {host} == '0.0.0.0'))"
    )
}

fn warning(name: &'static str, list: String) -> (Variable, Validation) {
    (
        Variable {
            name,
            expression: list,
        },
        Validation {
            rule: None,
            expression: format!("variables.roleError != '' || size(variables.{name}) == 0"),
            message_expression: format!("variables.{name}.join('; ')"),
            message: "an Earthly container is set up in a way that breaks builds",
        },
    )
}

/// The variables and validations of the warnings for the pod spec at `field` (`spec`,
/// `spec.template.spec`, ...); `template` leaves out what the mutation gives pods later.
pub fn warnings(field: &str, template: bool) -> (Vec<Variable>, Vec<Validation>) {
    let msg =
        |e: &str, text: &str| format!("variables.subject + ': container ' + {e}.f.name + {text}");
    let spec = format!("object.{}", field);
    let mut vars = vec![
        Variable {
            name: "initNames",
            expression: format!(
                "has({spec}.initContainers) ? {spec}.initContainers.map(c, c.name) : []"
            ),
        },
        Variable {
            name: "containerNames",
            expression: format!("has({spec}.containers) ? {spec}.containers.map(c, c.name) : []"),
        },
        Variable {
            name: "earthly",
            expression: format!(
                "variables.containers.filter(f, f.role != '').map(f, {{'f': f, 'at': {} + (f.init \
                 ? '.initContainers[' + string(variables.initNames.indexOf(f.name)) \
                 : '.containers[' + string(variables.containerNames.indexOf(f.name))) + ']'}})",
                lit(field)
            ),
        },
    ];
    let mut kinds = Vec::new();
    let privileged_roles = "e.f.role in ['all-in-one', 'buildkitd']";
    if !template {
        kinds.push(warning(
            "warnNotPrivileged",
            format!(
                "variables.earthly.filter(e, {privileged_roles} && !(has(e.f.c.securityContext) && has(e.f.c.securityContext.privileged) && e.f.c.securityContext.privileged))\
                 .map(e, {})",
                msg("e", "' (' + (e.f.role == 'buildkitd' ? 'buildkitd' : 'all-in-one Earthly runner') + ') is not privileged (' + e.at + '.securityContext.privileged); set it to true, or install the earthly-webhook mutating webhook'")
            ),
        ));
        kinds.push(warning(
            "warnNoScratch",
            format!(
                "variables.earthly.filter(e, {privileged_roles}).map(e, {{'e': e, 'path': {}}}).filter(s, !{}).map(s, {})",
                scratch::path("e.f.c", "e.f.family"),
                scratch::mounted("s.e.f.c", "s.path"),
                msg("s.e", "' has no scratch volume at ' + s.path + ' (' + s.e.at + '.volumeMounts); mount an emptyDir there, or install the earthly-webhook mutating webhook'")
            ),
        ));
    }
    kinds.push(warning(
        "warnTcpWithoutTls",
        format!(
            "variables.earthly.filter(e, e.f.role == 'buildkitd' && {} && {}).map(e, {})",
            env_is("e.f.c", "BUILDKIT_TCP_TRANSPORT_ENABLED", TRUE),
            env_is("e.f.c", "BUILDKIT_TLS_ENABLED", FALSE),
            msg("e", "' serves buildkit over TCP without TLS (' + e.at + '.env BUILDKIT_TLS_ENABLED=false); enable TLS and share its certificates with the clients'")
        ),
    ));
    // The client's address: the last entry of the first of BUILDKIT_HOST, EARTHLY_BUILDKIT_HOST
    // it sets, unless that comes from a reference (`detect::buildkit_host`).
    let host_vars = "['BUILDKIT_HOST', 'EARTHLY_BUILDKIT_HOST'].filter(v, has(e.f.c.env) && e.f.c.env.exists(x, x.name == v))";
    let entries = format!("e.f.c.env.filter(x, x.name == {host_vars}[0])");
    kinds.push(warning(
        "warnPlainTcpClient",
        format!(
            "variables.earthly.filter(e, e.f.role == 'client' && size({host_vars}) > 0)\
             .map(e, {{'e': e, 'entry': {entries}[size({entries}) - 1]}}).filter(h, !has(h.entry.valueFrom))\
             .map(h, {{'e': h.e, 'addr': has(h.entry.value) ? h.entry.value : ''}})\
             .filter(h, {} && ({} || {})).map(h, {})",
            remote_tcp("h.addr"),
            env_is("h.e.f.c", "BUILDKIT_TLS_ENABLED", FALSE),
            env_is("h.e.f.c", "EARTHLY_TLS_ENABLED", FALSE),
            msg("h.e", "' talks to buildkit at ' + h.addr + ' over plain TCP with TLS disabled (' + h.e.at + '.env); enable TLS on buildkitd and the client'")
        ),
    ));
    kinds.push(warning(
        "warnSrcDir",
        format!(
            "variables.earthly.filter(e, has(e.f.c.env) && e.f.c.env.exists(x, x.name == 'SRC_DIR')).map(e, {})",
            msg("e", "' sets SRC_DIR, which Earthly no longer reads (' + e.at + '.env); put the source in the working directory (/workspace) instead'")
        ),
    ));
    for (v, _) in &kinds {
        vars.push(v.clone());
    }
    (vars, kinds.into_iter().map(|(_, v)| v).collect())
}

/// The warnings policy of a validating policy: its constraints, conditions and variables, and
/// the footgun validations for the pod spec at `field`.
pub fn policy(base: &Policy, name: &'static str, field: &str, template: bool) -> Policy {
    let (vars, validations) = warnings(field, template);
    let mut variables = base.variables.clone();
    variables.extend(vars);
    Policy {
        name,
        resource_rules: base.resource_rules.clone(),
        match_conditions: base.match_conditions.clone(),
        variables,
        validations,
    }
}
