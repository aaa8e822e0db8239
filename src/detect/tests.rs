use super::*;
use crate::config::Detection;
use crate::rule_id::Warning;
use k8s_openapi::api::core::v1::EnvVar;

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

/// Classifies a one-container pod and returns its role and notes.
fn classified(c: Container) -> (Option<Role>, Vec<Warning>) {
    let spec = PodSpec {
        containers: vec![c],
        ..Default::default()
    };
    let out = detector().classify(None, &spec).expect("valid");
    (out.found.first().map(|f| f.role), out.notes)
}

#[test]
fn earthly_buildkit_host_alone_is_all_in_one_and_said() {
    // The entrypoint starts its own buildkitd and overwrites EARTHLY_BUILDKIT_HOST.
    let c = container(
        "e",
        "earthly/earthly",
        &[("EARTHLY_BUILDKIT_HOST", "tcp://10.0.0.7:8372")],
    );
    let (role, notes) = classified(c);
    assert_eq!(role, Some(Role::AllInOne));
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].message.contains("set BUILDKIT_HOST instead"),
        "{notes:?}"
    );
}

#[test]
fn loopback_buildkit_host_makes_a_client() {
    let c = container(
        "e",
        "earthly/earthly",
        &[("BUILDKIT_HOST", "tcp://127.0.0.1:8372")],
    );
    assert_eq!(role(c), Some(Role::Client));
}

#[test]
fn unix_socket_buildkit_host_makes_a_client() {
    let c = container(
        "e",
        "earthly/earthly",
        &[("BUILDKIT_HOST", "unix:///run/buildkit/buildkitd.sock")],
    );
    assert_eq!(role(c), Some(Role::Client));
}

#[test]
fn no_buildkit_makes_a_client() {
    let c = container("e", "earthly/earthly", &[("NO_BUILDKIT", "1")]);
    assert_eq!(role(c), Some(Role::Client));
}

#[test]
fn any_non_empty_no_buildkit_makes_a_client() {
    // `[ -z "$NO_BUILDKIT" ]` is false for "false", "0" and even a space.
    for v in ["false", "0", "no", " "] {
        let c = container("e", "earthly/earthly", &[("NO_BUILDKIT", v)]);
        assert_eq!(role(c), Some(Role::Client), "NO_BUILDKIT={v:?}");
    }
}

#[test]
fn empty_variables_are_unset() {
    let c = container(
        "e",
        "earthly/earthly",
        &[("NO_BUILDKIT", ""), ("BUILDKIT_HOST", "")],
    );
    assert_eq!(classified(c), (Some(Role::AllInOne), Vec::new()));
}

fn with_env(mut c: Container, env: serde_json::Value) -> Container {
    let mut list = c.env.take().unwrap_or_default();
    list.extend(serde_json::from_value::<Vec<EnvVar>>(env).expect("env"));
    c.env = Some(list);
    c
}

#[test]
fn buildkit_host_from_a_secret_is_a_client_and_said() {
    let c = with_env(
        container("e", "earthly/earthly", &[]),
        serde_json::json!([{"name": "BUILDKIT_HOST",
            "valueFrom": {"secretKeyRef": {"name": "bk", "key": "host"}}}]),
    );
    let (role, notes) = classified(c);
    assert_eq!(role, Some(Role::Client));
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0]
            .message
            .contains("BUILDKIT_HOST comes from a reference"),
        "{notes:?}"
    );
    assert!(
        notes[0].message.contains("earthly.dev/role.e: all-in-one"),
        "{notes:?}"
    );
}

fn with_env_from(mut c: Container, prefix: Option<&str>) -> Container {
    c.env_from = Some(vec![
        serde_json::from_value(
            serde_json::json!({"prefix": prefix, "configMapRef": {"name": "ci"}}),
        )
        .expect("envFrom"),
    ]);
    c
}

#[test]
fn env_from_that_may_set_buildkit_host_assumes_all_in_one_and_names_the_annotation() {
    let c = with_env_from(container("e", "earthly/earthly", &[]), None);
    let (role, notes) = classified(c);
    assert_eq!(role, Some(Role::AllInOne));
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].message.contains("assumed an all-in-one runner"),
        "{notes:?}"
    );
    assert!(
        notes[0].message.contains("earthly.dev/role.e: client"),
        "{notes:?}"
    );
}

#[test]
fn env_from_with_a_foreign_prefix_leaves_no_doubt() {
    let c = with_env_from(container("e", "earthly/earthly", &[]), Some("APP_"));
    assert_eq!(classified(c), (Some(Role::AllInOne), Vec::new()));
}

#[test]
fn env_wins_over_env_from() {
    let c = with_env_from(
        container(
            "e",
            "earthly/earthly",
            &[("BUILDKIT_HOST", "tcp://bk:8372")],
        ),
        None,
    );
    assert_eq!(classified(c), (Some(Role::Client), Vec::new()));
}

fn with_command(mut c: Container, command: &[&str]) -> Container {
    c.command = Some(command.iter().map(|s| (*s).to_owned()).collect());
    c
}

#[test]
fn command_replacing_the_entrypoint_lets_earthly_buildkit_host_decide() {
    let c = with_command(
        container(
            "e",
            "earthly/earthly",
            &[("EARTHLY_BUILDKIT_HOST", "tcp://bk:8372")],
        ),
        &["earthly", "+build"],
    );
    let (role, notes) = classified(c);
    assert_eq!(role, Some(Role::Client));
    assert!(
        notes[0]
            .message
            .contains("command replaces the image's entrypoint"),
        "{notes:?}"
    );
    assert!(
        notes[0].message.contains("earthly.dev/role.e: all-in-one"),
        "{notes:?}"
    );
}

#[test]
fn command_running_the_entrypoint_keeps_its_rules() {
    let c = with_command(
        container(
            "e",
            "earthly/earthly",
            &[("EARTHLY_BUILDKIT_HOST", "tcp://bk:8372")],
        ),
        &["/bin/sh", "-c", "/usr/bin/earthly-entrypoint.sh +build"],
    );
    assert_eq!(role(c), Some(Role::AllInOne));
}

#[test]
fn command_without_a_host_keeps_the_entrypoint_rules_and_says_so() {
    let c = with_command(container("e", "earthly/earthly", &[]), &["sleep", "1h"]);
    let (role, notes) = classified(c);
    assert_eq!(role, Some(Role::AllInOne));
    assert!(
        notes[0]
            .message
            .contains("chosen by the entrypoint's rules"),
        "{notes:?}"
    );
}

#[test]
fn earthbuild_images_are_their_own_family() {
    let d = detector();
    for (image, role, family) in [
        (
            "earthbuild/earthbuild:v0.8.16",
            Role::AllInOne,
            Family::Earthbuild,
        ),
        (
            "ghcr.io/earthbuild/buildkitd:main",
            Role::Buildkitd,
            Family::Earthbuild,
        ),
        ("earthly/satellite", Role::Buildkitd, Family::Earthly),
    ] {
        let c = container("x", image, &[]);
        assert_eq!(d.container_role(&c), Some(role), "{image}");
        assert_eq!(d.family(&c), Some(family), "{image}");
    }
    assert_eq!(Family::Earthbuild.buildkitd_image(), "earthbuild/buildkitd");
}

#[test]
fn earthbuild_cli_variable_decides_when_the_command_replaces_the_entrypoint() {
    let c = with_command(
        container(
            "e",
            "earthbuild/earthbuild",
            &[("EARTH_BUILDKIT_HOST", "tcp://bk:8372")],
        ),
        &["earth", "+build"],
    );
    assert_eq!(role(c), Some(Role::Client));
}

#[test]
fn configured_earthbuild_patterns_set_the_family() {
    let d = Detector::new(&Detection {
        earthbuild_images: vec!["ghcr.io/acme/runner".to_owned()],
        earthbuild_buildkitd_images: vec!["ghcr.io/acme/bk".to_owned()],
        ..Detection::default()
    })
    .expect("patterns");
    let spec = PodSpec {
        containers: vec![
            container("r", "ghcr.io/acme/runner:1", &[]),
            container("b", "ghcr.io/acme/bk:1", &[]),
        ],
        ..Default::default()
    };
    let found = d.classify(None, &spec).expect("valid");
    let got: Vec<(Role, Family)> = found.iter().map(|f| (f.role, f.family)).collect();
    assert_eq!(
        got,
        [
            (Role::AllInOne, Family::Earthbuild),
            (Role::Buildkitd, Family::Earthbuild)
        ]
    );
}

#[test]
fn client_of_a_sidecar_buildkitd_stays_a_client() {
    let spec = PodSpec {
        containers: vec![
            container(
                "earthly",
                "earthly/earthly",
                &[("BUILDKIT_HOST", "tcp://127.0.0.1:8372")],
            ),
            container("buildkitd", "earthly/buildkitd", &[]),
        ],
        ..Default::default()
    };
    let out = detector().classify(None, &spec).expect("valid");
    let roles: Vec<Role> = out.iter().map(|f| f.role).collect();
    assert_eq!(roles, [Role::Client, Role::Buildkitd]);
    assert!(out.notes.is_empty(), "{:?}", out.notes);
}

#[test]
fn native_sidecar_serves_the_client_but_a_plain_init_container_does_not() {
    let spec = |restart: Option<&str>| {
        let mut bk = container("bk", "earthly/buildkitd", &[]);
        bk.restart_policy = restart.map(str::to_owned);
        PodSpec {
            init_containers: Some(vec![bk]),
            containers: vec![container(
                "e",
                "earthly/earthly",
                &[("BUILDKIT_HOST", "unix:///run/buildkit/buildkitd.sock")],
            )],
            ..Default::default()
        }
    };
    let native = detector()
        .classify(None, &spec(Some("Always")))
        .expect("valid");
    assert!(native.notes.is_empty(), "{:?}", native.notes);
    let plain = detector().classify(None, &spec(None)).expect("valid");
    assert_eq!(plain.notes.len(), 1);
    assert!(
        plain.notes[0]
            .message
            .contains("no buildkitd runs alongside"),
        "{:?}",
        plain.notes
    );
    assert_eq!(plain[1].role, Role::Client);
}

#[test]
fn stated_role_keeps_the_family_of_the_image() {
    let spec = PodSpec {
        containers: vec![container(
            "e",
            "earthbuild/earthbuild",
            &[("NO_BUILDKIT", "1")],
        )],
        ..Default::default()
    };
    let found = detector()
        .classify(
            Some(&annotations(&[("earthly.dev/role", "all-in-one")])),
            &spec,
        )
        .expect("valid");
    assert_eq!(
        (found[0].role, found[0].family),
        (Role::AllInOne, Family::Earthbuild)
    );
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
        ..Detection::default()
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
