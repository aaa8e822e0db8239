{{/*
Helpers of the scheduled audit (audit-*.yaml). Kept apart from _helpers.tpl.
*/}}

{{/*
Name of the audit CronJob, ServiceAccount, ClusterRole and ClusterRoleBinding.
*/}}
{{- define "earthly-webhook.auditName" -}}
{{- include "earthly-webhook.suffixedName" (list . "audit") }}
{{- end }}

{{/*
Labels of the audit objects: the common labels with component "audit".
*/}}
{{- define "earthly-webhook.auditLabels" -}}
{{ include "earthly-webhook.labels" . | replace "app.kubernetes.io/component: webhook" "app.kubernetes.io/component: audit" }}
{{- end }}
