{{/* Chart name, truncated to 63 characters (DNS label). */}}
{{- define "act.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<name>, or the release name when it already contains the name. */}}
{{- define "act.fullname" -}}
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

{{- define "act.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "act.selectorLabels" -}}
app.kubernetes.io/name: {{ include "act.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: control-plane
{{- end }}

{{- define "act.labels" -}}
helm.sh/chart: {{ include "act.chart" . }}
{{ include "act.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: act
{{- end }}

{{- define "act.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "act.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "act.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "act.sidecarImage" -}}
{{- printf "%s:%s" (default .Values.image.repository .Values.sidecar.image.repository) (default (default .Chart.AppVersion .Values.image.tag) .Values.sidecar.image.tag) }}
{{- end }}

{{/* The Service's DNS name: the webhook certificate is issued for it. */}}
{{- define "act.serviceHost" -}}
{{- printf "%s.%s.svc" (include "act.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "act.adminSecretName" -}}
{{- default (printf "%s-admin" (include "act.fullname" .)) .Values.controlPlane.adminKey.existingSecret }}
{{- end }}

{{- define "act.signingSecretName" -}}
{{- default (printf "%s-signing-key" (include "act.fullname" .)) .Values.controlPlane.signingKey.existingSecret }}
{{- end }}

{{- define "act.webhookTlsSecretName" -}}
{{- printf "%s-webhook-tls" (include "act.fullname" .) }}
{{- end }}

{{- define "act.databaseSecretName" -}}
{{- default (printf "%s-database" (include "act.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{/* True when the control plane runs on PostgreSQL (database.url or database.existingSecret). */}}
{{- define "act.postgres" -}}
{{- if or .Values.database.url .Values.database.existingSecret }}true{{ end }}
{{- end }}

{{- define "act.kekSecretName" -}}
{{- default (printf "%s-kek" (include "act.fullname" .)) .Values.controlPlane.keyEncryption.existingSecret }}
{{- end }}

{{/* Refuses what cannot work: several replicas need the shared store. */}}
{{- define "act.validate" -}}
{{- if and (gt (int .Values.controlPlane.replicas) 1) (not (include "act.postgres" .)) }}
{{- fail "controlPlane.replicas > 1 needs PostgreSQL (set database.url or database.existingSecret): the embedded LMDB store belongs to one process" }}
{{- end }}
{{- end }}
