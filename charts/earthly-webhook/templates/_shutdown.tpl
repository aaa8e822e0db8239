{{/*
Shutdown timing. On SIGTERM the server fails /readyz at once, keeps serving for
server.shutdownDelay seconds while endpoints drop the pod, then closes its listener and lets
in-flight requests finish within server.shutdownGrace seconds. The kubelet kills the container
terminationGracePeriodSeconds after SIGTERM, so that must leave room for both.
*/}}
{{- define "earthly-webhook.validateShutdown" -}}
{{- $delay := int .Values.server.shutdownDelay }}
{{- $grace := int .Values.server.shutdownGrace }}
{{- $period := int .Values.terminationGracePeriodSeconds }}
{{- if le $period (add $delay $grace | int) }}
{{- fail (printf "terminationGracePeriodSeconds=%d does not leave room for server.shutdownDelay=%d plus server.shutdownGrace=%d: the kubelet would kill the webhook while it still serves or drains; raise terminationGracePeriodSeconds above %d or lower the delay or the grace" $period $delay $grace (add $delay $grace | int)) }}
{{- end }}
{{- end }}
