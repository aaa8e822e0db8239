{{/* Labels of the chart's objects. */}}

{{/*
Labels on every object.
*/}}
{{- define "earthly-webhook.labels" -}}
helm.sh/chart: {{ include "earthly-webhook.chart" . }}
{{ include "earthly-webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: earthly-webhook
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels that select the webhook pods (Deployment selector, Service, PDB, anti-affinity).
*/}}
{{- define "earthly-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "earthly-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{/*
Labels of the cleanup hook objects: the common labels with component "cleanup".
*/}}
{{- define "earthly-webhook.cleanupLabels" -}}
{{ include "earthly-webhook.labels" . | replace "app.kubernetes.io/component: webhook" "app.kubernetes.io/component: cleanup" }}
{{- end }}
