//! Version skew: a remote client whose `BUILDKIT_HOST` names a Service of the cluster, and whose
//! image is another version than the buildkitd behind that Service, gets a warning naming both
//! (Earthly: "versions of this container have only ever been tested with their corresponding
//! version of `earthly`. Mismatched versions are unsupported."). Advisory, rule
//! `buildkitd-version-skew`: never a violation.
//!
//! Nothing is parsed or looked up for containers that are not remote clients with a `tcp://`
//! address of a cluster-local name, nor for clients whose own version is unknown.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::fleet::{self, Instance};
use super::lookups::{Lookups, Stop};
use super::sticky::pod_selector;
use super::{Context, Findings, RuleId};
use crate::detect::{Found, Role, buildkit_host};
use crate::image::ImageRef;

/// The Service a `tcp://` address names, as `(namespace, name)`: `tcp://<svc>[:<port>]` in
/// `namespace` (the client's), or `<svc>.<ns>`, `<svc>.<ns>.svc`, `<svc>.<ns>.svc.cluster.local`.
/// IP addresses and other names are not Services of the cluster.
pub fn service_of(address: &str, namespace: &str) -> Option<(String, String)> {
    let rest = address.trim().strip_prefix("tcp://")?;
    let host = rest.split(['/', '?']).next()?;
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let (svc, ns) = match labels.as_slice() {
        [svc] => (*svc, namespace),
        [svc, ns] | [svc, ns, "svc"] | [svc, ns, "svc", "cluster", "local"] => (*svc, *ns),
        _ => return None,
    };
    // A Service name is a DNS-1035 label (it starts with a letter, so no IP address is one).
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let starts_with_letter = svc.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    (label(svc) && starts_with_letter && label(ns)).then(|| (ns.to_owned(), svc.to_owned()))
}

/// The version an image names: its tag when that is a version number (`v0.8.15`, `0.8.15`).
/// `latest`, other words (`prerelease`), no tag and a digest without a tag are not compared.
pub fn version(image: &str) -> Option<String> {
    let tag = ImageRef::parse(image).ok()?.tag()?.to_owned();
    let number = tag.strip_prefix('v').unwrap_or(&tag);
    number
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit())
        .then_some(tag)
}

/// Whether two versions are the same release (`v0.8.15` is `0.8.15`).
fn same(a: &str, b: &str) -> bool {
    a.trim_start_matches('v') == b.trim_start_matches('v')
}

/// The warning for client container `name` (`at` is its path) of version `client` talking to
/// `service`, behind which run the buildkitd `daemons`: the first daemon of a known, different
/// version is named.
pub fn check(
    subject: &str,
    at: &str,
    name: &str,
    client: &str,
    service: &str,
    daemons: &[Instance],
) -> Option<String> {
    let (daemon, version) = daemons.iter().find_map(|d| {
        let v = version(d.image.as_deref()?)?;
        (!same(&v, client)).then_some((d, v))
    })?;
    Some(format!(
        "{subject}: container {name} runs Earthly {client} ({at}.image) but {service} sends it to \
         buildkitd {version} ({}); run the same version of client and buildkitd, mismatched \
         versions are unsupported",
        daemon.name
    ))
}

/// A remote client container to compare: its path, the container, and the Service it names.
struct Client<'a> {
    at: String,
    container: &'a Container,
    version: String,
    namespace: String,
    service: String,
}

/// The remote clients of a pod spec whose version is known and whose address names a Service.
fn clients<'a>(
    field: &str,
    spec: &'a PodSpec,
    found: &[Found],
    namespace: &str,
) -> Vec<Client<'a>> {
    found
        .iter()
        .filter(|f| f.role == Role::Client)
        .filter_map(|f| {
            let container = f.container(spec)?;
            let address = buildkit_host(container)??;
            let (namespace, service) = service_of(address, namespace)?;
            let version = version(container.image.as_deref()?)?;
            let at = format!("{field}.{}[{}]", f.list.field(), f.index);
            Some(Client {
                at,
                container,
                version,
                namespace,
                service,
            })
        })
        .collect()
}

/// Whether a pod's controller is a kind whose pod template the webhook judges (and so compared
/// its clients already): ReplicaSet, StatefulSet, DaemonSet, Job.
pub fn judged_through_template(meta: &ObjectMeta) -> bool {
    meta.owner_references.iter().flatten().any(|o| {
        o.controller == Some(true)
            && matches!(
                o.kind.as_str(),
                "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job"
            )
    })
}

/// Warns about every remote client of `spec` (at `field` in the object `subject` names, in
/// `namespace`) whose version differs from the buildkitd behind the Service it names: one get
/// of that Service and one list of its buildkitd pods.
pub(crate) async fn judge(
    cx: &Context<'_>,
    namespace: &str,
    subject: &str,
    field: &str,
    spec: &PodSpec,
    found: &[Found],
) -> Result<Findings, Stop> {
    if !found.iter().any(|f| f.role == Role::Client) {
        return Ok(Findings::default());
    }
    let clients = clients(field, spec, found, namespace);
    if clients.is_empty() {
        return Ok(Findings::default());
    }
    let lookups = Lookups::new(cx, subject);
    let detector = cx.policy.detector();
    let mut out = Findings::default();
    for c in &clients {
        let Some(service) = lookups.service(&c.namespace, &c.service).await? else {
            continue;
        };
        let Some(selector) = pod_selector(&service) else {
            continue;
        };
        let pods = lookups.fleet(detector, &c.namespace, selector).await?;
        let daemons = fleet::instances(detector, &pods);
        let svc = format!("Service {}/{}", c.namespace, c.service);
        if let Some(w) = check(
            subject,
            &c.at,
            &c.container.name,
            &c.version,
            &svc,
            &daemons,
        ) {
            out.warn(RuleId::BuildkitdVersionSkew, w);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Family;
    use crate::rules::fleet::Tls;

    fn daemon(name: &str, image: &str) -> Instance {
        Instance {
            name: name.to_owned(),
            tls: Tls::default(),
            image: Some(image.to_owned()),
            family: Family::Earthly,
        }
    }

    #[test]
    fn addresses_that_name_a_service_of_the_cluster() {
        let of = |a: &str| service_of(a, "ci");
        let ci_bk = Some(("ci".to_owned(), "bk".to_owned()));
        assert_eq!(of("tcp://bk:8372"), ci_bk);
        assert_eq!(of("tcp://bk.ci:8372"), ci_bk);
        assert_eq!(of("tcp://bk.ci.svc:8372"), ci_bk);
        assert_eq!(of("tcp://bk.ci.svc.cluster.local:8372"), ci_bk);
        assert_eq!(
            of("tcp://bk.build.svc.cluster.local:8372"),
            Some(("build".to_owned(), "bk".to_owned()))
        );
        assert_eq!(of("tcp://bk"), ci_bk, "port optional");
    }

    #[test]
    fn other_addresses_name_no_service() {
        for a in [
            "tcp://10.0.0.7:8372",
            "tcp://[fd00::1]:8372",
            "tcp://builder.example.com:8372",
            "tcp://bk.ci.svc.other.local:8372",
            "unix:///run/buildkit/buildkitd.sock",
            "docker-container://bk",
            "tcp://-bk:8372",
            "tcp://:8372",
        ] {
            assert_eq!(service_of(a, "ci"), None, "{a}");
        }
    }

    #[test]
    fn only_version_tags_are_versions() {
        let v = |s: &str| Some(s.to_owned());
        assert_eq!(version("earthly/earthly:v0.8.15"), v("v0.8.15"));
        assert_eq!(version("registry:5000/earthly/earthly:0.8.15"), v("0.8.15"));
        assert_eq!(
            version(
                "earthly/earthly:v0.8.15@sha256:0000000000000000000000000000000000000000000000000000000000000000"
            ),
            v("v0.8.15")
        );
        for floating in [
            "earthly/earthly",
            "earthly/earthly:latest",
            "earthly/earthly:prerelease",
            "registry:5000/earthly/earthly",
            "earthly/earthly@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "not a reference",
        ] {
            assert_eq!(version(floating), None, "{floating}");
        }
    }

    #[test]
    fn warns_naming_both_versions() {
        let d = [daemon("Deployment ci/bk", "earthly/buildkitd:v0.8.15")];
        let w = check(
            "Job ci/build",
            "spec.template.spec.containers[0]",
            "earthly",
            "v0.8.14",
            "Service ci/bk",
            &d,
        )
        .expect("warning");
        assert_eq!(
            w,
            "Job ci/build: container earthly runs Earthly v0.8.14 \
             (spec.template.spec.containers[0].image) but Service ci/bk sends it to buildkitd \
             v0.8.15 (Deployment ci/bk); run the same version of client and buildkitd, \
             mismatched versions are unsupported"
        );
    }

    #[test]
    fn same_or_unknown_daemon_versions_are_not_warned_about() {
        let at = "spec.containers[0]";
        let same = [daemon("Pod ci/bk", "earthly/buildkitd:0.8.15")];
        assert_eq!(
            check("Pod ci/c", at, "e", "v0.8.15", "Service ci/bk", &same),
            None
        );
        let floating = [daemon("Pod ci/bk", "earthly/buildkitd:latest")];
        assert_eq!(
            check("Pod ci/c", at, "e", "v0.8.15", "Service ci/bk", &floating),
            None
        );
        assert_eq!(
            check("Pod ci/c", at, "e", "v0.8.15", "Service ci/bk", &[]),
            None
        );
    }
}
