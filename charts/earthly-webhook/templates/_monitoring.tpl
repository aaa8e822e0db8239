{{/*
Helpers of the monitoring objects (metrics Service, ServiceMonitor, PrometheusRule, Grafana
dashboard). They carry `app.kubernetes.io/component: metrics`, so that selectors and checks
that look for the webhook's own Service and ConfigMap (component `webhook`) never pick them.
*/}}

{{- define "earthly-webhook.metricsServiceName" -}}
{{- include "earthly-webhook.suffixedName" (list . "metrics") }}
{{- end }}

{{/*
Labels of the monitoring objects: the common labels with component "metrics".
*/}}
{{- define "earthly-webhook.metricsLabels" -}}
{{ include "earthly-webhook.labels" . | replace "app.kubernetes.io/component: webhook" "app.kubernetes.io/component: metrics" }}
{{- end }}

{{/*
Labels that tell the metrics Service apart from the webhook Service (the ServiceMonitor's
selector).
*/}}
{{- define "earthly-webhook.metricsSelectorLabels" -}}
{{ include "earthly-webhook.selectorLabels" . | replace "app.kubernetes.io/component: webhook" "app.kubernetes.io/component: metrics" }}
{{- end }}

{{/*
PromQL label matchers (no braces) selecting this release's series. By default the labels the
Prometheus Operator gives the ServiceMonitor's targets: the Service's namespace, and the Service
name as job.
*/}}
{{- define "earthly-webhook.seriesSelector" -}}
{{- if .Values.metrics.prometheusRule.seriesSelector }}
{{- .Values.metrics.prometheusRule.seriesSelector }}
{{- else }}
{{- printf "namespace=%q,job=%q" .Release.Namespace (include "earthly-webhook.metricsServiceName" .) }}
{{- end }}
{{- end }}

{{/*
Severity of the alerts for "the webhook is not answering well": with failurePolicy Fail the API
server refuses the requests (pod creation stops in opted-in namespaces), with Ignore it admits
them unchecked and unmutated.
*/}}
{{- define "earthly-webhook.outageSeverity" -}}
{{- if eq .Values.webhooks.failurePolicy "Fail" }}critical{{ else }}warning{{ end }}
{{- end }}

{{/*
The p99 latency threshold in seconds: a fraction of the time the API server waits.
*/}}
{{- define "earthly-webhook.latencyThresholdSeconds" -}}
{{- /* Rounded: 3 x 0.3 is 0.8999999999999999 in floating point. */}}
{{- round (mulf .Values.webhooks.timeoutSeconds .Values.metrics.prometheusRule.latency.timeoutRatio) 3 }}
{{- end }}

{{/*
The labels block of one alert. Call with (list <root> <severity>).
*/}}
{{- define "earthly-webhook.alertLabels" -}}
severity: {{ index . 1 }}
{{- with (index . 0).Values.metrics.prometheusRule.alertLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
An alert's runbook: its section of docs/operations.md (headings are the alert names, so the
anchor is the lowercased name). Call with (list <root> <alert name>).
*/}}
{{- define "earthly-webhook.runbookUrl" -}}
{{- printf "%s#%s" ((index . 0).Values.metrics.prometheusRule.runbookBaseUrl | trimSuffix "#") (index . 1 | lower) }}
{{- end }}

{{/*
Impossible monitoring values fail the render with a message naming the fix.
*/}}
{{- define "earthly-webhook.validateMonitoring" -}}
{{- $rule := .Values.metrics.prometheusRule }}
{{- if $rule.enabled }}
{{- if and (not .Values.metrics.serviceMonitor.enabled) (not $rule.seriesSelector) }}
{{- fail "metrics.prometheusRule.enabled=true selects the series of the ServiceMonitor's targets, but metrics.serviceMonitor.enabled=false: enable the ServiceMonitor, or set metrics.prometheusRule.seriesSelector to the labels of your own scrape (e.g. job=\"my-scrape\")" }}
{{- end }}
{{- if ge (int $rule.certificateExpiry.criticalDays) (int $rule.certificateExpiry.warningDays) }}
{{- fail (printf "metrics.prometheusRule.certificateExpiry.criticalDays=%v must be below warningDays=%v, or the warning would never fire before the critical alert" $rule.certificateExpiry.criticalDays $rule.certificateExpiry.warningDays) }}
{{- end }}
{{- $threshold := include "earthly-webhook.latencyThresholdSeconds" . | float64 }}
{{- $cutoff := subf .Values.webhooks.timeoutSeconds 0.5 }}
{{- if ge $threshold $cutoff }}
{{- fail (printf "metrics.prometheusRule.latency.timeoutRatio=%v puts the p99 threshold at %vs, not below the server's request timeout of %vs (webhooks.timeoutSeconds=%v minus 0.5 s), where requests are cut off: the alert could never fire. Lower the ratio" $rule.latency.timeoutRatio $threshold $cutoff .Values.webhooks.timeoutSeconds) }}
{{- end }}
{{- end }}
{{- end }}
