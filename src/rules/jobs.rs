//! Jobs and CronJobs: their pods are created by a controller, so a pod's warnings would reach
//! only the controller. The pod template is judged when the Job or CronJob is applied, and its
//! warnings name the workload, the container and the field; a remote client in it is compared
//! with the buildkitd it names ([`super::skew`]).

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::Operation;
use serde::Deserialize;

use super::instances::template_notes;
use super::{Context, Input, Judgement, Rule, Stop, footguns, object_ref, role_annotation, skew};

/// `batch/v1` Jobs being created or updated.
pub struct Jobs;

/// `batch/v1` CronJobs being created or updated.
pub struct CronJobs;

/// A Job as the rule reads it.
#[derive(Deserialize)]
pub struct Job {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<JobSpec>,
}

#[derive(Deserialize, PartialEq)]
pub struct JobSpec {
    #[serde(default)]
    template: Option<PodTemplateSpec>,
}

/// A CronJob as the rule reads it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronJob {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<CronJobSpec>,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CronJobSpec {
    #[serde(default)]
    job_template: Option<JobTemplate>,
}

#[derive(Deserialize, PartialEq)]
pub struct JobTemplate {
    #[serde(default)]
    spec: Option<JobSpec>,
}

impl CronJob {
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec
            .as_ref()?
            .job_template
            .as_ref()?
            .spec
            .as_ref()?
            .template
            .as_ref()
    }
}

impl Job {
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
}

impl Rule for Jobs {
    type Object = Job;

    async fn review(&self, cx: &Context<'_>, input: Input<'_, Job>) -> Result<Judgement, Stop> {
        let job = input.object()?;
        let old = input.old_object.map(Job::template);
        let subject = object_ref("Job", input.request.namespace.as_deref(), &job.metadata);
        let at = "spec.template.spec";
        judge(cx, &input, &subject, job.template(), old, at).await
    }
}

impl Rule for CronJobs {
    type Object = CronJob;

    async fn review(&self, cx: &Context<'_>, input: Input<'_, CronJob>) -> Result<Judgement, Stop> {
        let cron = input.object()?;
        let old = input.old_object.map(CronJob::template);
        let subject = object_ref(
            "CronJob",
            input.request.namespace.as_deref(),
            &cron.metadata,
        );
        let at = "spec.jobTemplate.spec.template.spec";
        judge(cx, &input, &subject, cron.template(), old, at).await
    }
}

/// The template's findings; none for an update that leaves the template as it was.
async fn judge<O: Sync>(
    cx: &Context<'_>,
    input: &Input<'_, O>,
    subject: &str,
    template: Option<&PodTemplateSpec>,
    old: Option<Option<&PodTemplateSpec>>,
    at: &str,
) -> Result<Judgement, Stop> {
    let Some(template) = template else {
        return Ok(Judgement::default());
    };
    if input.request.operation == Operation::Update && old == Some(Some(template)) {
        return Ok(Judgement::default());
    }
    let Some(spec) = template.spec.as_ref() else {
        return Ok(Judgement::default());
    };
    let annotations = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref());
    match cx.policy.detector().classify(annotations, spec) {
        Ok(found) => {
            let mut findings = footguns::check_template(subject, at, spec, &found);
            let notes = template_notes(subject, found.notes.iter());
            findings.warnings.extend(notes);
            let namespace = input.namespace();
            findings.extend(skew::judge(cx, namespace, subject, at, spec, &found).await?);
            Ok(findings.into())
        }
        Err(e) => Ok(role_annotation(subject, e).into()),
    }
}
