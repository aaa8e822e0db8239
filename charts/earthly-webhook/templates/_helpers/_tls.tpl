{{/* The webhook's serving certificate and the CA bundle the API server trusts. */}}

{{/*
The certificate material of `certificates.mode: chart`, as JSON {"ca.crt", "tls.crt", "tls.key"}
(base64). An existing Secret with all three keys is reused, so upgrades keep the same CA and
certificate; otherwise a CA and a certificate for <service>.<namespace>.svc are generated.
genCA is random, so the result is computed once per render and kept in the render's top-level
context (the map that holds .Values, .Release and .Chart and that every template of one render
shares), so the Secret and both webhook configurations carry the same CA. Not in .Values: those
are the user's values, and a template dumping them would dump the private key. Call with the
top-level context.
*/}}
{{- define "earthly-webhook.chartTls" -}}
{{- if not (hasKey . "earthlyWebhookChartTls") }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "earthly-webhook.tlsSecretName" .) }}
{{- $data := dict }}
{{- if and $secret $secret.data (hasKey $secret.data "ca.crt") (hasKey $secret.data "tls.crt") (hasKey $secret.data "tls.key") }}
{{- $data = dict "ca.crt" (index $secret.data "ca.crt") "tls.crt" (index $secret.data "tls.crt") "tls.key" (index $secret.data "tls.key") }}
{{- else }}
{{- $svc := include "earthly-webhook.serviceName" . }}
{{- $fqdn := printf "%s.%s.svc" $svc .Release.Namespace }}
{{- $sans := list $svc (printf "%s.%s" $svc .Release.Namespace) $fqdn (printf "%s.cluster.local" $fqdn) }}
{{- $ca := genCA (printf "%s-ca" (include "earthly-webhook.fullname" .)) (int .Values.certificates.chart.caValidityDays) }}
{{- $cert := genSignedCert $fqdn nil $sans (int .Values.certificates.chart.validityDays) $ca }}
{{- $data = dict "ca.crt" ($ca.Cert | b64enc) "tls.crt" ($cert.Cert | b64enc) "tls.key" ($cert.Key | b64enc) }}
{{- end }}
{{- $_ := set . "earthlyWebhookChartTls" $data }}
{{- end }}
{{- index . "earthlyWebhookChartTls" | toJson }}
{{- end }}

{{/*
The caBundle field of a webhook clientConfig (base64 PEM), or nothing in certManager mode where
cert-manager's CA injector fills it in.
*/}}
{{- define "earthly-webhook.caBundle" -}}
{{- $mode := .Values.certificates.mode }}
{{- if eq $mode "chart" }}
{{- index (include "earthly-webhook.chartTls" . | fromJson) "ca.crt" }}
{{- else if eq $mode "existingSecret" }}
{{- $ca := .Values.certificates.existingSecret.caBundle | trim }}
{{- if contains "-----BEGIN" $ca }}
{{- $ca | b64enc }}
{{- else }}
{{- $ca }}
{{- end }}
{{- end }}
{{- end }}
