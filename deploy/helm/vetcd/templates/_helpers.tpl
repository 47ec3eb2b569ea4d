{{/* Chart name, truncated for label values. */}}
{{- define "vetcd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The StatefulSet's name. Pod names are <fullname>-N and vetcd derives its
ordinal from that suffix; the headless Service adds "-headless", so keep
the fullname at most 40 characters (DNS labels are at most 63).
*/}}
{{- define "vetcd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vetcd.headless" -}}{{ include "vetcd.fullname" . }}-headless{{- end }}
{{- define "vetcd.clusterRecord" -}}{{ include "vetcd.fullname" . }}-cluster{{- end }}
{{- define "vetcd.configName" -}}{{ include "vetcd.fullname" . }}-config{{- end }}

{{- define "vetcd.tlsSecret" -}}
{{- if .Values.tls.generate }}{{ include "vetcd.fullname" . }}-tls{{ else }}{{ required "tls.existingSecret is required when tls.generate is false" .Values.tls.existingSecret }}{{ end }}
{{- end }}

{{- define "vetcd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}{{ default (include "vetcd.fullname" .) .Values.serviceAccount.name }}{{ else }}{{ default "default" .Values.serviceAccount.name }}{{ end }}
{{- end }}

{{- define "vetcd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vetcd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vetcd.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vetcd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "vetcd.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* Whole seconds of a Go duration made of h, m and s parts ("1m30s"). */}}
{{- define "vetcd.seconds" -}}
{{- $total := 0 -}}
{{- range (regexFindAll "[0-9]+[hms]" . -1) -}}
{{- $n := int (trimSuffix "h" (trimSuffix "m" (trimSuffix "s" .))) -}}
{{- if hasSuffix "h" . }}{{ $total = add $total (mul $n 3600) }}{{ else if hasSuffix "m" . }}{{ $total = add $total (mul $n 60) }}{{ else }}{{ $total = add $total $n }}{{ end -}}
{{- end -}}
{{- $total -}}
{{- end }}
