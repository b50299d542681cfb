{{/* The chart's name, or nameOverride. */}}
{{- define "rollout-controller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects: at most 63 characters (DNS label). */}}
{{- define "rollout-controller.fullname" -}}
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

{{/* The full name followed by a suffix (a dict: "root" the top context, "suffix" e.g.
"-metrics"): the full name is cut first, so that the whole stays a DNS label of at most 63
characters and the suffix, which tells the objects apart, is always kept. */}}
{{- define "rollout-controller.suffixedName" -}}
{{- $suffix := .suffix | default "" }}
{{- $base := include "rollout-controller.fullname" .root | trunc (int (sub 63 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s%s" $base $suffix }}
{{- end }}

{{/* The name of a shard's objects (Deployment, PodDisruptionBudget, Lease): the full name, and
"-<shard>" when sharded. A dict: "root" the top context, "shard" the shard's name or "". */}}
{{- define "rollout-controller.shardName" -}}
{{- include "rollout-controller.suffixedName" (dict "root" .root "suffix" (ternary (printf "-%s" .shard) "" (ne .shard ""))) }}
{{- end }}

{{- define "rollout-controller.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rollout-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rollout-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rollout-controller.labels" -}}
helm.sh/chart: {{ include "rollout-controller.chart" . }}
{{ include "rollout-controller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "rollout-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rollout-controller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rollout-controller.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
