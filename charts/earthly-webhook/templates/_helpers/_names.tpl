{{/* Object names (all at most 63 characters) and image references. */}}

{{/*
Chart name, truncated to 63 characters (the limit of a label value and of a DNS label).
*/}}
{{- define "earthly-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the prefix of every object name. Truncated to 63 characters because some
Kubernetes name fields are DNS labels; the release name is dropped when it already contains the
chart name.
*/}}
{{- define "earthly-webhook.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A name derived from the full name with a suffix, still at most 63 characters: the full name is
cut to make room for the suffix rather than cutting the suffix.
*/}}
{{- define "earthly-webhook.suffixedName" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- $max := sub 62 (len $suffix) | int }}
{{- printf "%s-%s" (include "earthly-webhook.fullname" $root | trunc $max | trimSuffix "-") $suffix }}
{{- end }}

{{- define "earthly-webhook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "earthly-webhook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "earthly-webhook.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must be set when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "earthly-webhook.serviceName" -}}
{{- include "earthly-webhook.fullname" . }}
{{- end }}

{{- define "earthly-webhook.configMapName" -}}
{{- include "earthly-webhook.suffixedName" (list . "config") }}
{{- end }}

{{- define "earthly-webhook.mutatingName" -}}
{{- include "earthly-webhook.fullname" . }}
{{- end }}

{{- define "earthly-webhook.validatingName" -}}
{{- include "earthly-webhook.fullname" . }}
{{- end }}

{{/*
Name of the Secret holding tls.crt/tls.key (and ca.crt) that the server mounts.
*/}}
{{- define "earthly-webhook.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "existingSecret" }}
{{- .Values.certificates.existingSecret.name }}
{{- else }}
{{- include "earthly-webhook.suffixedName" (list . "tls") }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}; the digest wins over the tag.
Call with (list <image values> <default tag>).
*/}}
{{- define "earthly-webhook.imageRef" -}}
{{- $img := index . 0 }}
{{- $defaultTag := index . 1 }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default $defaultTag $img.tag) }}
{{- end }}
{{- end }}
