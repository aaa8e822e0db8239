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

{{/*
The certificate material of `certificates.mode: chart`, as JSON {"ca.crt", "tls.crt", "tls.key"}
(base64). An existing Secret with all three keys is reused, so upgrades keep the same CA and
certificate; otherwise a CA and a certificate for <service>.<namespace>.svc are generated.
The result is computed once per render and kept in .Values (the one map all templates of a
render share), so the Secret and both webhook configurations carry the same CA.
*/}}
{{- define "earthly-webhook.chartTls" -}}
{{- if not (hasKey .Values "_chartTls") }}
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
{{- $_ := set .Values "_chartTls" $data }}
{{- end }}
{{- index .Values "_chartTls" | toJson }}
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

{{/*
Annotations shared by both webhook configurations.
*/}}
{{- define "earthly-webhook.webhookAnnotations" -}}
{{- if eq .Values.certificates.mode "certManager" }}
# cert-manager's CA injector copies the CA of this Certificate into every caBundle below, and
# again whenever it is renewed.
cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "earthly-webhook.suffixedName" (list . "serving")) }}
{{- end }}
{{- with .Values.webhooks.annotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Substrings for the CEL image test of the pod matchCondition: the built-in Earthly and EarthBuild
images plus,
for each config.detection pattern, its longest literal run (outside `*`, `?`, `[...]`, `{...}`).
Every image matching the glob contains that run, so the filter never drops an Earthly pod. The
Docker Hub prefixes the server adds when it normalises a name are cut first, since pod specs
usually omit them. Returns a JSON list.
*/}}
{{- define "earthly-webhook.imageNeedles" -}}
{{- $needles := list "earthly/earthly" "earthly/buildkitd" "earthly/satellite" "earthbuild/earthbuild" "earthbuild/buildkitd" }}
{{- $d := .Values.config.detection }}
{{- $patterns := concat $d.earthlyImages $d.buildkitdImages ($d.earthbuildImages | default list) ($d.earthbuildBuildkitdImages | default list) }}
{{- range $patterns }}
{{- $p := regexReplaceAll "^(index\\.)?docker\\.io/" . "" }}
{{- $p = regexReplaceAll "^library/" $p "" }}
{{- $best := "" }}
{{- range regexSplit "\\{[^}]*\\}|\\[[^\\]]*\\]|[*?]" $p -1 }}
{{- $run := trimPrefix "/" . }}
{{- if gt (len $run) (len $best) }}
{{- $best = $run }}
{{- end }}
{{- end }}
{{- if not $best }}
{{- fail (printf "webhooks.matchConditions.enabled: the image pattern %q in config.detection has no literal part the CEL filter could test, so it would hide matching pods from the webhook; make the pattern more specific or set webhooks.matchConditions.enabled=false" .) }}
{{- end }}
{{- $needles = append $needles $best }}
{{- end }}
{{- $needles | uniq | toJson }}
{{- end }}

{{/*
Whether matchConditions are rendered: asked for, and the cluster serves them (1.28+).
*/}}
{{- define "earthly-webhook.matchConditionsOn" -}}
{{- if and .Values.webhooks.matchConditions.enabled (semverCompare ">=1.28.0-0" .Capabilities.KubeVersion.Version) }}true{{ end }}
{{- end }}

{{/*
The pod matchCondition. `request.resource.resource != 'pods'` lets every other resource of the
same webhook entry through (scale requests, workloads, HPAs and Services have no pod images to
test); `has()` guards keep a malformed pod from turning into an evaluation error, which would
be handled by failurePolicy instead of by the API server's own validation.
*/}}
{{- define "earthly-webhook.matchConditions" -}}
{{- $tests := list }}
{{- range (include "earthly-webhook.imageNeedles" . | fromJsonArray) }}
{{- $tests = append $tests (printf "c.image.contains('%s')" .) }}
{{- end }}
{{- $img := printf "has(c.image) && (%s)" (join " || " $tests) }}
- name: earthly-pods-only
  expression: >-
    request.resource.resource != 'pods' ||
    (has(object.metadata.annotations) && 'earthly.dev/role' in object.metadata.annotations) ||
    (has(object.spec.containers) && object.spec.containers.exists(c, {{ $img }})) ||
    (has(object.spec.initContainers) && object.spec.initContainers.exists(c, {{ $img }}))
{{- end }}

{{/*
One webhook entry. Called with a dict:
  root: the top context; kind: "mutate" or "validate"; mode: "" (opted-in namespaces without a
  mode label, plain path) or enforce|warn|audit; rules: the YAML rules list.
*/}}
{{- define "earthly-webhook.webhookEntry" -}}
{{- $root := .root }}
{{- $v := $root.Values.webhooks }}
{{- $path := printf "/%s" .kind }}
{{- $name := printf "%s.webhook.earthly.dev" .kind }}
{{- if .mode }}
{{- $path = printf "/%s/%s" .kind .mode }}
{{- $name = printf "%s-%s.webhook.earthly.dev" .kind .mode }}
{{- end }}
{{- $caBundle := include "earthly-webhook.caBundle" $root }}
- name: {{ $name }}
  # v1 only: the server speaks admission.k8s.io/v1 AdmissionReview and nothing older.
  admissionReviewVersions: ["v1"]
  # The server only decides (and looks objects up); it changes nothing outside the reviewed
  # object. Declaring that lets `kubectl apply --dry-run=server` call the webhook, so dry runs
  # show the same answers as real requests.
  sideEffects: None
  # Decisions take microseconds and lookups give up after config.cluster.lookupTimeoutMs, so a
  # short timeout bounds how long a stuck webhook can hold up the API server.
  timeoutSeconds: {{ $v.timeoutSeconds }}
  # Fail: reject when the webhook is unreachable, rather than admit an Earthly pod that cannot
  # run or a buildkitd setup that breaks builds. The selectors below bound who is affected.
  failurePolicy: {{ $v.failurePolicy }}
  # Equivalent: a request through another API version of the same resource is converted and
  # still reviewed, so old clients cannot sidestep the webhook.
  matchPolicy: Equivalent
  {{- if eq .kind "mutate" }}
  # IfNeeded: if a later mutating webhook changes the pod (adds a container, say), the API
  # server calls this one again so the added containers get the Earthly settings too. The
  # mutation is idempotent, so a second call on an unchanged pod changes nothing.
  reinvocationPolicy: IfNeeded
  {{- end }}
  clientConfig:
    service:
      name: {{ include "earthly-webhook.serviceName" $root }}
      namespace: {{ $root.Release.Namespace }}
      path: {{ $path }}
      port: {{ $root.Values.service.port }}
    {{- if $caBundle }}
    caBundle: {{ $caBundle }}
    {{- end }}
  # Blast radius: only namespaces that opted in, never the webhook's own namespace (its pods
  # must start while it is down) nor kube-system.
  namespaceSelector:
    matchExpressions:
      - key: {{ $v.optInLabel.key | quote }}
        operator: In
        values: [{{ $v.optInLabel.value | quote }}]
      {{- if .mode }}
      - key: {{ $v.policyModeLabel | quote }}
        operator: In
        values: [{{ .mode | quote }}]
      {{- else }}
      # No (valid) mode label: the plain path, which uses config.policy.defaultMode.
      - key: {{ $v.policyModeLabel | quote }}
        operator: NotIn
        values: ["enforce", "warn", "audit"]
      {{- end }}
      - key: kubernetes.io/metadata.name
        operator: NotIn
        values:
          {{- range (concat (list $root.Release.Namespace "kube-system") $v.excludeNamespaces | uniq) }}
          - {{ . | quote }}
          {{- end }}
  # Any object can opt itself out with this label.
  objectSelector:
    matchExpressions:
      - key: {{ $v.optOutLabel.key | quote }}
        operator: NotIn
        values: [{{ $v.optOutLabel.value | quote }}]
  rules:
    {{- .rules | trim | nindent 4 }}
  {{- if include "earthly-webhook.matchConditionsOn" $root }}
  # Only pods that look like Earthly are sent; everything else is admitted without a call.
  matchConditions:
    {{- include "earthly-webhook.matchConditions" $root | trim | nindent 4 }}
  {{- end }}
{{- end }}

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
