//! Unit tests of the `check` pipeline: template pods, patch rebasing, the input's cluster view
//! and the verdicts, driven by in-memory documents.

use super::lookups::InputCluster;
use super::request::CHECK_UID;
use super::template::*;
use super::*;
use crate::cluster::WorkloadKind;
use crate::cluster::{ClusterView, LookupError, PodQuery};
use crate::config::FailureMode;
use json_patch::jsonptr::PointerBuf;
use json_patch::{MoveOperation, PatchOperation, RemoveOperation};
use serde_json::json;

/// The policy the command runs with (the defaults, lookups the input cannot answer warn).
fn policy() -> Policy {
    check_policy(None).expect("policy")
}

fn documents(yaml: &str) -> Vec<Document> {
    input::parse_documents("t.yaml", yaml).expect("parses")
}

async fn check(yaml: &str, options: &CheckOptions) -> Report {
    check_documents(&policy(), documents(yaml), options).await
}

fn ops(report: &ObjectReport) -> Vec<(String, String)> {
    report
        .patch
        .0
        .iter()
        .map(|op| {
            let v = serde_json::to_value(op).expect("op");
            (
                v["op"].as_str().unwrap_or_default().to_owned(),
                v["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

const RUNNER_POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: runner}
spec:
  containers:
  - name: earthly
    image: earthly/earthly:v0.8.15
";

const RUNNER_CRONJOB: &str = "apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: ci}
spec:
  schedule: '0 3 * * *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: earthly
            image: earthly/earthly:v0.8.15
            securityContext: {privileged: true}
";

#[test]
fn template_paths_cover_the_pod_making_kinds() {
    for (api_version, kind, path) in [
        ("apps/v1", "Deployment", Some("/spec/template")),
        ("apps/v1", "StatefulSet", Some("/spec/template")),
        ("apps/v1", "ReplicaSet", Some("/spec/template")),
        ("apps/v1", "DaemonSet", Some("/spec/template")),
        ("v1", "ReplicationController", Some("/spec/template")),
        ("batch/v1", "Job", Some("/spec/template")),
        (
            "batch/v1",
            "CronJob",
            Some("/spec/jobTemplate/spec/template"),
        ),
        ("v1", "Pod", None),
        ("v1", "Service", None),
        ("example.com/v1", "Deployment", None),
    ] {
        assert_eq!(
            template_path(api_version, kind),
            path,
            "{api_version} {kind}"
        );
    }
}

#[test]
fn template_pod_is_what_the_controller_would_send() {
    let docs = documents(
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: bk}
spec:
  template:
    metadata:
      name: ignored
      labels: {app: bk}
      annotations: {earthly.dev/role: buildkitd}
    spec:
      containers: [{name: b, image: earthly/buildkitd}]
",
    );
    let pod = template_pod(&docs[0].objects[0], "/spec/template", "ci").expect("pod");
    assert_eq!(
        pod,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "labels": {"app": "bk"},
                "annotations": {"earthly.dev/role": "buildkitd"},
                "generateName": "bk-",
                "namespace": "ci",
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "bk",
                    "uid": CHECK_UID, "controller": true, "blockOwnerDeletion": true
                }]
            },
            "spec": {"containers": [{"name": "b", "image": "earthly/buildkitd"}]}
        })
    );
}

#[test]
fn template_without_spec_makes_no_pod() {
    let docs =
        documents("apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {template: {}}\n");
    assert_eq!(
        template_pod(&docs[0].objects[0], "/spec/template", "ci"),
        None
    );
}

#[test]
fn rebase_moves_pod_paths_under_the_template() {
    let patch: Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/spec/volumes", "value": []},
        {"op": "remove", "path": "/spec/containers/0/env/1"},
        {"op": "move", "from": "/spec/a~1b", "path": "/spec/c"},
    ]))
    .expect("patch");
    let rebased = rebase_patch(
        patch,
        "/spec/jobTemplate/spec/template",
        &json!({"spec": {}}),
    )
    .expect("rebased");
    assert_eq!(
        serde_json::to_value(&rebased).expect("json"),
        json!([
            {"op": "add", "path": "/spec/jobTemplate/spec/template/spec/volumes", "value": []},
            {"op": "remove", "path": "/spec/jobTemplate/spec/template/spec/containers/0/env/1"},
            {"op": "move", "from": "/spec/jobTemplate/spec/template/spec/a~1b", "path": "/spec/jobTemplate/spec/template/spec/c"},
        ])
    );
    assert!(matches!(
        rebased.0[2],
        PatchOperation::Move(MoveOperation { .. })
    ));
}

#[test]
fn rebase_creates_template_metadata_a_patch_needs() {
    let patch = Patch(vec![PatchOperation::Remove(RemoveOperation {
        path: PointerBuf::parse("/metadata/labels/x").expect("ptr"),
    })]);
    let rebased = rebase_patch(patch.clone(), "/spec/template", &json!({"spec": {}})).expect("ok");
    assert_eq!(rebased.0.len(), 2);
    assert_eq!(rebased.0[0].path().as_str(), "/spec/template/metadata");
    let kept = rebase_patch(patch, "/spec/template", &json!({"metadata": {}})).expect("ok");
    assert_eq!(kept.0.len(), 1);
}

#[tokio::test]
async fn pod_is_mutated_then_validated_in_the_default_namespace() {
    let report = check(RUNNER_POD, &CheckOptions::default()).await;
    let pod = &report.objects[0];
    assert_eq!(pod.verdict, Outcome::Mutated);
    assert_eq!(pod.namespace.as_deref(), Some("default"));
    assert_eq!(
        ops(pod),
        [
            ("add", "/spec/containers/0/securityContext"),
            ("add", "/spec/volumes"),
            ("add", "/spec/containers/0/volumeMounts"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(pod.patch_operations["privileged"], 1);
    assert_eq!(pod.patch_operations["scratch_volume"], 2);
    assert_eq!(
        pod.mutated["spec"]["containers"][0]["securityContext"]["privileged"],
        true
    );
    assert_eq!(
        pod.warnings[..2],
        [
            "set privileged on container earthly: the all-in-one Earthly runner cannot run unprivileged",
            "mounted scratch volume earthly-tmp at /tmp/earthly in container earthly",
        ]
    );
    // The validation of the mutated pod finds nothing left to fix.
    assert!(
        !pod.warnings
            .iter()
            .any(|w| w.contains("install the earthly-webhook")),
        "{:?}",
        pod.warnings
    );
    assert_eq!(report.exit_status(), EXIT_ALLOWED);
}

#[tokio::test]
async fn namespace_option_applies_only_to_objects_without_one() {
    let yaml = format!("{RUNNER_POD}---\n{RUNNER_CRONJOB}");
    let report = check(
        &yaml,
        &CheckOptions {
            namespace: "builds".to_owned(),
            mode: None,
        },
    )
    .await;
    assert_eq!(report.objects[0].namespace.as_deref(), Some("builds"));
    assert_eq!(report.objects[1].namespace.as_deref(), Some("ci"));
}

#[tokio::test]
async fn cronjob_patch_lands_in_the_job_template() {
    let report = check(RUNNER_CRONJOB, &CheckOptions::default()).await;
    let cronjob = &report.objects[0];
    assert_eq!(cronjob.verdict, Outcome::Mutated);
    assert_eq!(
        ops(cronjob),
        [
            ("add", "/spec/jobTemplate/spec/template/spec/volumes"),
            (
                "add",
                "/spec/jobTemplate/spec/template/spec/containers/0/volumeMounts"
            ),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let mount = &cronjob.mutated["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        [0]["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/tmp/earthly");
}

const BAD_ROLE_JOB: &str = "apiVersion: batch/v1
kind: Job
metadata: {name: j, namespace: ci}
spec:
  template:
    metadata:
      annotations: {earthly.dev/role: root}
    spec:
      containers: [{name: e, image: earthly/earthly}]
";

/// A runner Job in a namespace whose Pod Security level refuses its pods: the Job itself is
/// fine, its pods are not.
const BASELINE_JOB: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: ci
  labels: {pod-security.kubernetes.io/enforce: baseline}
---
apiVersion: batch/v1
kind: Job
metadata: {name: j, namespace: ci}
spec:
  template:
    spec:
      containers: [{name: e, image: earthly/earthly}]
";

#[tokio::test]
async fn refused_pods_deny_their_workload() {
    let report = check(BASELINE_JOB, &CheckOptions::default()).await;
    let job = &report.objects[1];
    assert_eq!(job.verdict, Outcome::Denied);
    assert_eq!(job.denials.len(), 1, "{:?}", job.denials);
    assert!(
        job.denials[0]
            .starts_with("Pod ci/j-*: container e (all-in-one Earthly runner) must run privileged"),
        "{:?}",
        job.denials
    );
    assert!(job.patch.0.is_empty());
    assert_eq!(report.exit_status(), EXIT_DENIED);
}

#[tokio::test]
async fn warn_mode_turns_the_denial_into_a_warning() {
    let options = CheckOptions {
        mode: Some(Mode::Warn),
        ..CheckOptions::default()
    };
    let report = check(BAD_ROLE_JOB, &options).await;
    let job = &report.objects[0];
    assert_eq!(job.verdict, Outcome::Allowed);
    assert!(
        job.warnings
            .iter()
            .any(|w| w.starts_with("Pod ci/j-*: annotation earthly.dev/role")),
        "{:?}",
        job.warnings
    );
    assert_eq!(report.mode, Mode::Warn);
    assert_eq!(report.exit_status(), EXIT_ALLOWED);
}

#[tokio::test]
async fn audit_mode_records_the_annotation_silently() {
    let options = CheckOptions {
        mode: Some(Mode::Audit),
        ..CheckOptions::default()
    };
    let report = check(BAD_ROLE_JOB, &options).await;
    let job = &report.objects[0];
    assert_eq!(job.verdict, Outcome::Allowed);
    assert!(!job.warnings.iter().any(|w| w.contains("earthly.dev/role")));
    assert!(job.audit_annotations["role-annotation"].starts_with("Pod ci/j-*:"));
}

#[test]
fn a_pod_that_is_not_a_pod_is_an_input_error_not_a_denial() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: e\n    image: earthly/earthly\n    env: NO_DOCKER=1\n";
    let error = input::parse_documents("t.yaml", yaml).expect_err("not a Pod");
    assert_eq!(
        error.to_string(),
        "t.yaml document 1: Pod p: cannot be read as a v1 Pod: spec.containers[0].env: invalid type: string \"NO_DOCKER=1\", expected a sequence"
    );
}

#[tokio::test]
async fn list_item_patches_are_relative_to_the_item() {
    let yaml = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {}",
        RUNNER_POD.trim_end().replace('\n', "\n  ")
    );
    let report = check(&yaml, &CheckOptions::default()).await;
    let pod = &report.objects[0];
    assert_eq!(pod.origin.item, Some(1));
    assert_eq!(ops(pod)[0].1, "/spec/containers/0/securityContext");
}

#[tokio::test]
async fn unrelated_objects_are_allowed_untouched() {
    let report = check(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ci}\n",
        &CheckOptions::default(),
    )
    .await;
    assert!(
        report
            .objects
            .iter()
            .all(|o| o.verdict == Outcome::Allowed && o.patch.0.is_empty())
    );
    assert_eq!(report.objects[1].namespace, None);
    assert_eq!(report.objects[1].object_ref(), "Namespace ci");
}

const CLUSTER_INPUT: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: ci
  labels: {pod-security.kubernetes.io/enforce: baseline}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: bk, namespace: ci}
spec:
  replicas: 2
  selector: {matchLabels: {app: bk}}
  template:
    metadata: {labels: {app: bk}}
    spec:
      containers: [{name: b, image: earthly/buildkitd}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds}
spec:
  replicas: 5
  template:
    metadata: {labels: {app: ds}}
    spec:
      containers: [{name: b, image: earthly/buildkitd}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: 'off', namespace: ci}
spec:
  replicas: 0
  template:
    metadata: {labels: {app: 'off'}}
    spec:
      containers: [{name: b, image: earthly/buildkitd}]
---
apiVersion: v1
kind: Service
metadata: {name: bk, namespace: ci}
spec:
  selector: {app: bk}
---
apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: ci, labels: {app: bk}}
spec:
  containers: [{name: b, image: earthly/buildkitd}]
";

fn input_cluster(yaml: &str) -> InputCluster {
    let objects: Vec<(Object, Option<String>)> = documents(yaml)
        .iter()
        .flat_map(|d| d.objects.clone())
        .map(|o| {
            let ns = namespace_of(&o, "default");
            (o, ns)
        })
        .collect();
    InputCluster::new(&objects)
}

#[tokio::test]
async fn lookups_are_answered_from_the_input() {
    let mut cluster = input_cluster(CLUSTER_INPUT);
    let view = cluster.before(usize::MAX);
    let labels = view
        .namespace_labels("ci")
        .await
        .expect("known")
        .expect("exists");
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
    let bk = view
        .workload(WorkloadKind::Deployment, "ci", "bk")
        .await
        .expect("known")
        .expect("exists");
    assert_eq!(bk.replicas, Some(2));
    let ds = view
        .workload(WorkloadKind::DaemonSet, "default", "ds")
        .await
        .expect("known")
        .expect("exists");
    assert_eq!(ds.replicas, None, "a DaemonSet has no replicas");
    let selector = [("app".to_owned(), "bk".to_owned())].into_iter().collect();
    assert_eq!(
        view.services("ci", &selector)
            .await
            .expect("services")
            .len(),
        1
    );
    let pods = view
        .pods("ci", &PodQuery::all(&selector))
        .await
        .expect("pods");
    assert_eq!(pods.len(), 2, "the Deployment's pod and the bare pod");
}

#[tokio::test]
async fn what_is_not_in_the_input_is_unknown() {
    let mut cluster = input_cluster(CLUSTER_INPUT);
    let view = cluster.before(usize::MAX);
    assert_eq!(
        view.namespace_labels("default").await,
        Err(LookupError::Unknown(
            "Namespace default is not in the input; the cluster would have to be asked".to_owned()
        ))
    );
    assert!(matches!(
        view.workload(WorkloadKind::StatefulSet, "ci", "bk").await,
        Err(LookupError::Unknown(_))
    ));
}

#[tokio::test]
async fn pods_appear_in_input_order_and_never_see_themselves() {
    let mut cluster = input_cluster(CLUSTER_INPUT);
    let selector = [("app".to_owned(), "bk".to_owned())].into_iter().collect();
    // Reviewing the Deployment (the second object): its own pod is not there yet.
    let at_deployment = cluster
        .before(1)
        .pods("ci", &PodQuery::all(&selector))
        .await
        .expect("pods");
    assert!(at_deployment.is_empty());
    // Reviewing the bare pod (the sixth object): the Deployment's pod is, the bare pod is not.
    let at_bare = cluster
        .before(5)
        .pods("ci", &PodQuery::all(&selector))
        .await
        .expect("pods");
    assert_eq!(at_bare.len(), 1);
    assert_eq!(at_bare[0].metadata.generate_name.as_deref(), Some("bk-"));
    // A workload scaled to zero runs no pod.
    let off = [("app".to_owned(), "off".to_owned())].into_iter().collect();
    assert!(
        cluster
            .before(6)
            .pods("ci", &PodQuery::all(&off))
            .await
            .expect("pods")
            .is_empty()
    );
}

#[test]
fn namespace_flag_must_be_a_dns_label() {
    assert!(namespace_name("earthly-ci").is_ok());
    for bad in ["", "Earthly", "-ci", "ci-", "a_b", &"a".repeat(64)] {
        assert!(namespace_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn lookups_the_input_cannot_answer_warn_instead_of_denying() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        "cluster: {failureMode: deny}\npolicy: {defaultMode: warn}\n",
    )
    .expect("write");
    let policy = check_policy(Some(&path)).expect("policy");
    assert_eq!(policy.config().cluster.failure_mode, FailureMode::Allow);
    assert_eq!(policy.config().policy.default_mode, Mode::Warn);
    assert_eq!(
        check_policy(None)
            .expect("defaults")
            .config()
            .cluster
            .failure_mode,
        FailureMode::Allow
    );
}

/// Blue/green: two one-replica buildkitd Deployments whose pods one Service selects.
const BLUE_GREEN: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: bk-blue, namespace: ci}
spec:
  replicas: 1
  selector: {matchLabels: {app: bk, slot: blue}}
  template:
    metadata: {labels: {app: bk, slot: blue}}
    spec:
      containers: [{name: b, image: 'earthly/buildkitd:v0.8.15'}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: bk-green, namespace: ci}
spec:
  replicas: 1
  selector: {matchLabels: {app: bk, slot: green}}
  template:
    metadata: {labels: {app: bk, slot: green}}
    spec:
      containers: [{name: b, image: 'earthly/buildkitd:v0.8.16'}]
---
apiVersion: v1
kind: Service
metadata: {name: bk, namespace: ci}
spec:
  selector: {app: bk}
  ports: [{port: 8372}]
";

#[tokio::test]
async fn two_buildkitd_deployments_behind_one_service_are_denied_offline() {
    let report = check(BLUE_GREEN, &CheckOptions::default()).await;
    let verdicts: Vec<(&str, Outcome)> = report
        .objects
        .iter()
        .map(|o| (o.name.as_str(), o.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("bk-blue", Outcome::Mutated),
            ("bk-green", Outcome::Denied),
            ("bk", Outcome::Denied)
        ]
    );
    assert!(
        report.objects[1].denials[0].starts_with(
            "earthly/buildkitd does not support multi-node setups: Deployment ci/bk-green would \
             be a second buildkitd behind Service ci/bk, next to Deployment ci/bk-blue."
        ),
        "{:?}",
        report.objects[1].denials
    );
    assert!(
        report.objects[2].denials[0].contains(
            "Service ci/bk selects 2 buildkitd instances: Deployment ci/bk-blue and Deployment \
             ci/bk-green."
        ),
        "{:?}",
        report.objects[2].denials
    );
    assert_eq!(report.exit_status(), EXIT_DENIED);
}

const CLIENT_JOB: &str = "apiVersion: batch/v1
kind: Job
metadata: {name: build, namespace: ci}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: earthly
        image: earthly/earthly:v0.8.14
        env: [{name: BUILDKIT_HOST, value: 'tcp://bk.ci.svc:8372'}]
";

#[tokio::test]
async fn version_skew_is_warned_about_offline_when_the_service_is_in_the_input() {
    let blue = BLUE_GREEN.split("---").next().expect("blue");
    let service = BLUE_GREEN.rsplit("---").next().expect("service");
    let yaml = format!("{blue}---{service}---\n{CLIENT_JOB}");
    let report = check(&yaml, &CheckOptions::default()).await;
    let job = report.objects.last().expect("job");
    assert_eq!(job.verdict, Outcome::Allowed);
    assert!(
        job.warnings.iter().any(|w| w.contains(
            "runs Earthly v0.8.14 (spec.template.spec.containers[0].image) but Service ci/bk \
             sends it to buildkitd v0.8.15 (Deployment ci/bk-blue)"
        )),
        "{:?}",
        job.warnings
    );
    // Without the Service in the input there is nothing to compare, and nothing to say.
    let alone = check(CLIENT_JOB, &CheckOptions::default()).await;
    assert_eq!(alone.objects[0].warnings, Vec::<String>::new());
}
