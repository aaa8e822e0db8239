//! `--write-reports`: one PolicyReport per audited namespace, by server-side apply with field
//! manager `earthly-webhook`. `results` has no list-type marker in the CRD, so it is an atomic
//! list: each apply replaces it whole and results that no longer hold disappear. Reports of
//! namespaces that left the scope are deleted.

use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::list::{ListError, Lister, Resource};
use super::policyreport::{API_VERSION, KIND, MANAGED_BY, POLICY, REPORT_NAME};

/// The PolicyReport collection.
pub const POLICY_REPORTS: Resource = Resource {
    api_version: API_VERSION,
    kind: KIND,
    plural: "policyreports",
};

/// Reports that could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error(
        "the PolicyReport CRD (policyreports.wgpolicyk8s.io, version v1alpha2) is not installed; install it with the chart (`--set audit.installCRD=true`) or `kubectl apply -f charts/earthly-webhook/files/wgpolicyk8s.io_policyreports.yaml`, or run the audit without --write-reports"
    )]
    CrdMissing,
    #[error(
        "permission denied: cannot {verb} policyreports.wgpolicyk8s.io in namespace {namespace} (HTTP 403: {message}); grant `{verb}` on policyreports, e.g. with the chart's audit ClusterRole"
    )]
    Forbidden {
        verb: &'static str,
        namespace: String,
        message: String,
    },
    #[error("cannot {verb} the PolicyReport of namespace {namespace}: {message}")]
    Failed {
        verb: &'static str,
        namespace: String,
        message: String,
    },
    #[error(transparent)]
    List(ListError),
}

/// The namespaces from `existing` whose report has to go: they left the scope.
pub fn stale(existing: &[String], scope: &[String]) -> Vec<String> {
    existing
        .iter()
        .filter(|ns| !scope.contains(ns))
        .cloned()
        .collect()
}

/// Writes PolicyReports.
pub struct Writer<'a> {
    lister: &'a Lister,
}

impl<'a> Writer<'a> {
    pub fn new(lister: &'a Lister) -> Self {
        Self { lister }
    }

    /// The namespaces holding one of our reports. Called first, so a missing CRD is reported
    /// before any namespace is read.
    pub async fn existing(&self) -> Result<Vec<String>, WriteError> {
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let items = self
            .lister
            .list(&POLICY_REPORTS, None, Some(&selector))
            .await
            .map_err(|e| match e {
                ListError::Api { code: 404, .. } => WriteError::CrdMissing,
                other => WriteError::List(other),
            })?;
        let mut names: Vec<String> = items
            .iter()
            .filter(|r| r.pointer("/metadata/name").and_then(Value::as_str) == Some(REPORT_NAME))
            .filter_map(|r| {
                r.pointer("/metadata/namespace")?
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Creates or updates the report of `namespace`.
    pub async fn apply(&self, namespace: &str, report: &Value) -> Result<(), WriteError> {
        let url = POLICY_REPORTS.path(Some(namespace));
        let params = PatchParams::apply(POLICY).force();
        let request = kube::core::Request::new(url)
            .patch(REPORT_NAME, &params, &Patch::Apply(report))
            .map_err(|e| failed("apply", namespace, e.to_string()))?;
        self.lister
            .client()
            .request::<Value>(request)
            .await
            .map(drop)
            .map_err(|e| write_error(e, "patch", namespace))
    }

    /// Deletes the report of `namespace`; one already gone is fine.
    pub async fn delete(&self, namespace: &str) -> Result<(), WriteError> {
        let url = POLICY_REPORTS.path(Some(namespace));
        let request = kube::core::Request::new(url)
            .delete(REPORT_NAME, &Default::default())
            .map_err(|e| failed("delete", namespace, e.to_string()))?;
        match self.lister.client().request::<Value>(request).await {
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            other => other
                .map(drop)
                .map_err(|e| write_error(e, "delete", namespace)),
        }
    }
}

fn failed(verb: &'static str, namespace: &str, message: String) -> WriteError {
    WriteError::Failed {
        verb,
        namespace: namespace.to_owned(),
        message,
    }
}

fn write_error(error: kube::Error, verb: &'static str, namespace: &str) -> WriteError {
    match error {
        kube::Error::Api(s) if s.code == 403 => WriteError::Forbidden {
            verb,
            namespace: namespace.to_owned(),
            message: s.message,
        },
        // A 404 on the collection: the resource type itself is unknown.
        kube::Error::Api(s) if s.code == 404 && verb == "patch" => WriteError::CrdMissing,
        other => failed(verb, namespace, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_of_namespaces_that_left_the_scope_are_stale() {
        let existing = vec!["a".to_owned(), "gone".to_owned()];
        assert_eq!(
            stale(&existing, &["a".to_owned(), "new".to_owned()]),
            ["gone"]
        );
    }
}
