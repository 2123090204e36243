{{/* Names ------------------------------------------------------------------------------ */}}
{{- define "humo-farm.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "humo-farm.name" -}}{{ include "humo-farm.fullname" .root }}-{{ .component }}{{- end -}}

{{- define "humo-farm.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "humo-farm.labels" -}}
{{ include "humo-farm.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Images: { root, image: .Values.images.<name> } -------------------------------------- */}}
{{- define "humo-farm.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}

{{/* The Secret every pod reads: the chart's own, or existingSecret ----------------------- */}}
{{- define "humo-farm.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "humo-farm.fullname" .) -}}
{{- end -}}

{{- define "humo-farm.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "humo-farm.secretName" .root }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/* What every farm process needs: the record, the broker, the object store ------------- */}}
{{- define "humo-farm.env" -}}
{{ include "humo-farm.secretEnv" (dict "root" . "env" "FARM_DATABASE_URL" "key" "database-url") }}
{{ include "humo-farm.secretEnv" (dict "root" . "env" "FARM_BROKER_URL" "key" "broker-url") }}
{{ include "humo-farm.secretEnv" (dict "root" . "env" "AWS_ACCESS_KEY_ID" "key" "s3-access-key-id" "optional" true) }}
{{ include "humo-farm.secretEnv" (dict "root" . "env" "AWS_SECRET_ACCESS_KEY" "key" "s3-secret-access-key" "optional" true) }}
{{- end -}}

{{- define "humo-farm.envFrom" -}}
- configMapRef:
    name: {{ include "humo-farm.fullname" . }}
{{- end -}}

{{/* Pod and container security: non-root, no privilege escalation ----------------------- */}}
{{- define "humo-farm.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "humo-farm.containerSecurity" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The weights folder, read-only, for the worker pools --------------------------------- */}}
{{- define "humo-farm.weights.enabled" -}}
{{- if or .Values.weights.existingClaim .Values.weights.hostPath -}}true{{- end -}}
{{- end -}}

{{- define "humo-farm.weights.volume" -}}
- name: weights
  {{- if .Values.weights.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.weights.existingClaim }}
    readOnly: true
  {{- else }}
  hostPath:
    path: {{ .Values.weights.hostPath }}
    type: Directory
  {{- end }}
{{- end -}}

{{/* Hook for the migration Job: before install/upgrade; after install when the chart's own
     Postgres is created by the same install (it does not exist before) ------------------ */}}
{{- define "humo-farm.migrationHook" -}}
{{- if .Values.postgresql.enabled -}}post-install,pre-upgrade{{- else -}}pre-install,pre-upgrade{{- end -}}
{{- end -}}

{{- define "humo-farm.dispatcherUrl" -}}
http://{{ include "humo-farm.name" (dict "root" . "component" "dispatcher") }}.{{ .Release.Namespace }}.svc.cluster.local:{{ .Values.dispatcher.service.port }}
{{- end -}}

{{/* The viewer's API token KEDA's demand trigger and Prometheus send: key metrics-token of
     the farm's Secret. "true" when there is one: secrets.existingSecret (which must hold the
     key) or secrets.metricsToken (put in the chart's own Secret) ------------------------- */}}
{{- define "humo-farm.metricsToken" -}}
{{- if or .Values.secrets.existingSecret .Values.secrets.metricsToken -}}true{{- end -}}
{{- end -}}

{{/* "true" when KEDA scales the pool { root, pool }: enabled, autoscaling enabled, and its
     trigger can authenticate (the demand trigger needs the metrics token; until it is set the
     pool runs at its `replicas`) --------------------------------------------------------- */}}
{{- define "humo-farm.autoscaled" -}}
{{- $v := index .root.Values .pool -}}
{{- if and $v.enabled $v.autoscaling.enabled -}}
{{- if or (eq .root.Values.autoscaling.trigger "redis") (include "humo-farm.metricsToken" .root) -}}true{{- end -}}
{{- end -}}
{{- end -}}
