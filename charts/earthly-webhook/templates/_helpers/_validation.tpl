{{/* Values that cannot work together fail the render. */}}

{{/*
Values that cannot work together fail the render with what to set.
*/}}
{{- define "earthly-webhook.validateValues" -}}
{{- $c := .Values.certificates }}
{{- if eq $c.mode "existingSecret" }}
{{- if not $c.existingSecret.name }}
{{- fail "certificates.mode=existingSecret needs certificates.existingSecret.name: the name of a Secret in the release namespace with tls.crt and tls.key (or use certificates.mode=chart or certManager)" }}
{{- end }}
{{- if not $c.existingSecret.caBundle }}
{{- fail "certificates.mode=existingSecret needs certificates.existingSecret.caBundle: the CA that signed the Secret's certificate, base64-encoded PEM (`earthly-webhook certs` prints it)" }}
{{- end }}
{{- else }}
{{- if $c.existingSecret.caBundle }}
{{- fail (printf "certificates.existingSecret.caBundle is only used with certificates.mode=existingSecret; with mode=%s the %s, so remove certificates.existingSecret.caBundle" $c.mode (ternary "cert-manager CA injector fills in the caBundle" "chart generates the CA" (eq $c.mode "certManager"))) }}
{{- end }}
{{- if $c.existingSecret.name }}
{{- fail (printf "certificates.existingSecret.name is only used with certificates.mode=existingSecret; set certificates.mode=existingSecret or remove certificates.existingSecret.name (mode=%s creates its own Secret)" $c.mode) }}
{{- end }}
{{- end }}
{{- if and (ne $c.mode "certManager") $c.certManager.issuerRef.name }}
{{- fail (printf "certificates.certManager.issuerRef.name is only used with certificates.mode=certManager; set certificates.mode=certManager or remove it (mode=%s)" $c.mode) }}
{{- end }}
{{- $replicas := int .Values.replicaCount }}
{{- if .Values.podDisruptionBudget.enabled }}
{{- if lt $replicas 1 }}
{{- fail (printf "replicaCount=%d with podDisruptionBudget.enabled=true: a PodDisruptionBudget over no pods blocks nothing and hides the outage; set replicaCount to 2 or more, or set podDisruptionBudget.enabled=false" $replicas) }}
{{- end }}
{{- $min := .Values.podDisruptionBudget.minAvailable }}
{{- if and (kindIs "float64" $min) (ge (int $min) $replicas) }}
{{- fail (printf "podDisruptionBudget.minAvailable=%d with replicaCount=%d would block every node drain; set replicaCount above minAvailable (2 with the default minAvailable 1), lower minAvailable, or set podDisruptionBudget.enabled=false" (int $min) $replicas) }}
{{- end }}
{{- if and (kindIs "int64" $min) (ge (int $min) $replicas) }}
{{- fail (printf "podDisruptionBudget.minAvailable=%d with replicaCount=%d would block every node drain; set replicaCount above minAvailable (2 with the default minAvailable 1), lower minAvailable, or set podDisruptionBudget.enabled=false" (int $min) $replicas) }}
{{- end }}
{{- end }}
{{- if and (lt $replicas 1) (eq .Values.webhooks.failurePolicy "Fail") (or .Values.webhooks.mutating.enabled .Values.webhooks.validating.enabled) }}
{{- fail "replicaCount=0 with webhooks.failurePolicy=Fail rejects every pod created in opted-in namespaces; set replicaCount to 2 or more, or set webhooks.failurePolicy=Ignore" }}
{{- end }}
{{- $lookupMs := int (default 2000 .Values.config.cluster.lookupTimeoutMs) }}
{{- if ge $lookupMs (mul (int .Values.webhooks.timeoutSeconds) 1000 | int) }}
{{- fail (printf "config.cluster.lookupTimeoutMs=%d is not below webhooks.timeoutSeconds=%d: the API server would give up before a lookup could fail cleanly; lower config.cluster.lookupTimeoutMs or raise webhooks.timeoutSeconds" $lookupMs (int .Values.webhooks.timeoutSeconds)) }}
{{- end }}
{{- $cpu := toString (dig "limits" "cpu" "" (.Values.resources | default dict)) }}
{{- if $cpu }}
{{- $milli := ternary (trimSuffix "m" $cpu | int) (mulf (float64 $cpu) 1000 | int) (hasSuffix "m" $cpu) }}
{{- if ge (mul (sub (int .Values.server.workerThreads) 1) 1000) $milli }}
{{- fail (printf "server.workerThreads=%d is more than resources.limits.cpu=%s can run at once: the extra threads would only wait for CPU time; lower server.workerThreads or raise resources.limits.cpu" (int .Values.server.workerThreads) $cpu) }}
{{- end }}
{{- end }}
{{- if and (not .Values.webhooks.mutating.enabled) (not .Values.webhooks.validating.enabled) }}
{{- fail "webhooks.mutating.enabled and webhooks.validating.enabled are both false: nothing would call the webhook; enable at least one" }}
{{- end }}
{{- if include "earthly-webhook.matchConditionsOn" . }}
{{- $_ := include "earthly-webhook.imageNeedles" . }}
{{- end }}
{{- end }}
