{{/* The webhook configurations' entries: annotations, the CEL matchCondition, one entry. */}}

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
