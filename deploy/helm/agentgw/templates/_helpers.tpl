{{/* The release's name is every object's name. */}}
{{- define "agentgw.fullname" -}}
{{ .Release.Name | trunc 63 }}
{{- end }}

{{- define "agentgw.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agentgw.labels" -}}
{{ include "agentgw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}
