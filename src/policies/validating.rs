//! The ValidatingAdmissionPolicies: the stateless validation rules of `src/rules`, with the
//! same preconditions (what the webhook leaves unjudged is left unmatched) and the same message
//! text, built by `messageExpression` from the detection variables of [`super::cel`].

use serde_json::{Value, json};

use super::cel::{self, Template, Variable, lit};
use super::footguns;
use crate::config::{Config, Instances};
use crate::rule_id::RuleId;

/// The way out single-instance mode always offers (`rules::sticky::STICKY_WAY_OUT`).
const STICKY_WAY_OUT: &str =
    "enable sticky multi-instance mode and front it with a Service using sessionAffinity: ClientIP";

/// One validation: the rule it stands for (none for a warning), the CEL that must hold, and the
/// message.
#[derive(Clone)]
pub struct Validation {
    pub rule: Option<RuleId>,
    pub expression: String,
    pub message_expression: String,
    /// Shown when `messageExpression` cannot be evaluated.
    pub message: &'static str,
}

/// One policy before it becomes an object.
#[derive(Clone)]
pub struct Policy {
    pub name: &'static str,
    pub resource_rules: Value,
    pub match_conditions: Vec<(&'static str, String)>,
    pub variables: Vec<Variable>,
    pub validations: Vec<Validation>,
}

/// `Kind namespace/name` as `rules::object_ref` writes it; `kind` is a CEL string.
fn subject(kind: &str) -> Variable {
    Variable {
        name: "subject",
        expression: format!(
            "{kind} + ' ' + \
             (request.namespace != '' ? request.namespace + '/' : has(object.metadata.namespace) && object.metadata.namespace != '' ? object.metadata.namespace + '/' : '') + \
             (has(object.metadata.name) && object.metadata.name != '' ? object.metadata.name \
              : has(object.metadata.generateName) && object.metadata.generateName != '' ? object.metadata.generateName + '*' : '(unnamed)')"
        ),
    }
}

fn role_annotation() -> Validation {
    Validation {
        rule: Some(RuleId::RoleAnnotation),
        expression: "variables.roleError == ''".to_owned(),
        message_expression: "variables.subject + ': ' + variables.roleError".to_owned(),
        message: "an earthly.dev/role annotation is not readable; use one of all-in-one, buildkitd, client, none",
    }
}

/// `resourceRules` for CREATE and UPDATE of each (group, resources).
fn rules(groups: &[(&str, &[&str])]) -> Value {
    groups
        .iter()
        .map(|(group, resources)| {
            json!({
                "apiGroups": [group],
                "apiVersions": ["*"],
                "resources": resources,
                "operations": ["CREATE", "UPDATE"],
            })
        })
        .collect()
}

fn variables(subject_kind: &str, t: Template, config: &Config) -> Vec<Variable> {
    let mut v = vec![subject(subject_kind)];
    v.extend(cel::detection(t, &config.detection));
    v
}

/// `spec.replicas`, defaulted as the apiserver does.
fn replicas(o: &str) -> String {
    format!("(has({o}.spec.replicas) ? {o}.spec.replicas : 1)")
}

/// The buildkitd workloads (and ReplicationControllers): replicas and DaemonSets (`single`
/// mode), role annotations.
fn workloads(config: &Config) -> Policy {
    let prefix = "variables.buildkitd[0].family + '/buildkitd does not support multi-node setups: ' + variables.subject";
    let way_out = lit(&format!(", or {STICKY_WAY_OUT}."));
    let mut validations = vec![role_annotation()];
    if config.buildkitd.instances == Instances::Single {
        validations.push(Validation {
            rule: Some(RuleId::BuildkitdReplicas),
            expression: format!(
                "variables.roleError != '' || request.kind.kind == 'DaemonSet' || size(variables.buildkitd) == 0 || {} <= 1",
                replicas("object")
            ),
            message_expression: format!(
                "{prefix} + ' asks for ' + string({}) + ' replicas. Set replicas: 1' + {way_out}",
                replicas("object")
            ),
            message: "buildkitd does not support multi-node setups: set replicas: 1",
        });
        validations.push(Validation {
            rule: Some(RuleId::BuildkitdDaemonset),
            expression: "variables.roleError != '' || request.kind.kind != 'DaemonSet' || size(variables.buildkitd) == 0".to_owned(),
            message_expression: format!(
                "{prefix} + ' runs one buildkitd on every node. Use a Deployment with replicas: 1' + {way_out}"
            ),
            message: "buildkitd does not support multi-node setups: use a Deployment with replicas: 1",
        });
    }
    Policy {
        name: "earthly-webhook-workloads",
        resource_rules: rules(&[
            (
                "apps",
                &["deployments", "statefulsets", "replicasets", "daemonsets"],
            ),
            // ReplicationControllers: the same replica count and pod template, in the core group.
            ("", &["replicationcontrollers"]),
        ]),
        match_conditions: vec![
            (
                "has-pod-template",
                "has(object.spec) && has(object.spec.template) && has(object.spec.template.spec)".to_owned(),
            ),
            ("not-being-deleted", "!has(object.metadata.deletionTimestamp)".to_owned()),
            (
                "not-judged-through-its-deployment",
                "request.kind.kind != 'ReplicaSet' || !has(object.metadata.ownerReferences) || \
                 !object.metadata.ownerReferences.exists(o, has(o.controller) && o.controller && o.kind == 'Deployment')"
                    .to_owned(),
            ),
            (
                "changes-replicas-or-template",
                format!(
                    "request.operation != 'UPDATE' || oldObject == null || !has(oldObject.spec) || {} != {} || \
                     (has(oldObject.spec.template) ? oldObject.spec.template : {{}}) != object.spec.template",
                    replicas("oldObject"),
                    replicas("object")
                ),
            ),
        ],
        variables: variables("request.kind.kind", Template::WORKLOAD, config),
        validations,
    }
}

/// Pods: role annotations (`/validate` and `/mutate` both refuse what detection cannot read).
fn pods(config: &Config) -> Policy {
    Policy {
        name: "earthly-webhook-pods",
        resource_rules: rules(&[("", &["pods"])]),
        match_conditions: vec![("has-spec", "has(object.spec)".to_owned())],
        variables: variables("'Pod'", Template::POD, config),
        validations: vec![role_annotation()],
    }
}

/// Jobs and CronJobs: role annotations of the pod template, unless an update keeps it.
fn jobs(config: &Config, cron: bool) -> Policy {
    let (name, resource, kind, t, template) = if cron {
        (
            "earthly-webhook-cronjobs",
            "cronjobs",
            "'CronJob'",
            Template::CRONJOB,
            "spec.jobTemplate.spec.template",
        )
    } else {
        (
            "earthly-webhook-jobs",
            "jobs",
            "'Job'",
            Template::WORKLOAD,
            "spec.template",
        )
    };
    let has_path = |o: &str| {
        let mut parts = vec![o.to_owned()];
        let mut out = Vec::new();
        for p in template.split('.') {
            parts.push(p.to_owned());
            out.push(format!("has({})", parts.join(".")));
        }
        out.join(" && ")
    };
    Policy {
        name,
        resource_rules: rules(&[("batch", &[resource])]),
        match_conditions: vec![
            (
                "has-pod-template",
                format!("{} && has(object.{template}.spec)", has_path("object")),
            ),
            (
                "changes-template",
                format!(
                    "request.operation != 'UPDATE' || oldObject == null || !({}) || oldObject.{template} != object.{template}",
                    has_path("oldObject")
                ),
            ),
        ],
        variables: variables(kind, t, config),
        validations: vec![role_annotation()],
    }
}

/// Every validating policy the config calls for: the decisions, then the warnings.
pub fn policies(config: &Config) -> (Vec<Policy>, Vec<Policy>) {
    let (w, p, j, c) = (
        workloads(config),
        pods(config),
        jobs(config, false),
        jobs(config, true),
    );
    let warnings = vec![
        footguns::policy(
            &w,
            "earthly-webhook-workload-warnings",
            "spec.template.spec",
            true,
        ),
        footguns::policy(&p, "earthly-webhook-pod-warnings", "spec", false),
        footguns::policy(
            &j,
            "earthly-webhook-job-warnings",
            "spec.template.spec",
            true,
        ),
        footguns::policy(
            &c,
            "earthly-webhook-cronjob-warnings",
            "spec.jobTemplate.spec.template.spec",
            true,
        ),
    ];
    (vec![w, p, j, c], warnings)
}

impl Policy {
    /// The `admissionregistration.k8s.io/v1` object.
    pub fn to_object(&self) -> Value {
        let conditions: Vec<Value> = self
            .match_conditions
            .iter()
            .map(|(name, expression)| json!({"name": name, "expression": expression}))
            .collect();
        let variables: Vec<Value> = self
            .variables
            .iter()
            .map(|v| json!({"name": v.name, "expression": v.expression}))
            .collect();
        let validations: Vec<Value> = self
            .validations
            .iter()
            .map(|v| {
                json!({
                    "expression": v.expression,
                    "messageExpression": v.message_expression,
                    "message": v.message,
                    "reason": "Forbidden",
                })
            })
            .collect();
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {
                "name": self.name,
                "labels": {"app.kubernetes.io/managed-by": "earthly-webhook-policies"},
            },
            "spec": {
                // A policy that cannot be evaluated refuses, as the webhook's failurePolicy does.
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": self.resource_rules, "matchPolicy": "Equivalent"},
                "matchConditions": conditions,
                "variables": variables,
                "validations": validations,
            },
        })
    }
}
