{{/* A worker pool's pod template: { root, pool: "explore" | "hero", values: .Values.<pool> } */}}
{{- define "humo-farm.workerPod" -}}
{{- $root := .root -}}
{{- $v := .values -}}
metadata:
  labels:
    {{- include "humo-farm.selectorLabels" (dict "root" $root "component" .pool) | nindent 4 }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "humo-farm.podSecurity" $root | nindent 4 }}
  containers:
    - name: worker
      image: {{ include "humo-farm.image" (dict "root" $root "image" (index $root.Values.images .pool)) }}
      imagePullPolicy: {{ $root.Values.images.pullPolicy }}
      command: ["python", "-m", "workers", "--pool", {{ .pool | quote }}]
      envFrom:
        {{- include "humo-farm.envFrom" $root | nindent 8 }}
      env:
        {{- include "humo-farm.env" $root | nindent 8 }}
        - {name: FARM_DEVICE, value: cuda}
        - {name: {{ printf "FARM_%s_CHECKPOINT" (upper .pool) }}, value: {{ $v.checkpoint | quote }}}
        {{- if include "humo-farm.weights.enabled" $root }}
        - {name: FARM_WEIGHTS_DIR, value: /weights}
        {{- end }}
        {{- range $key, $value := $v.env }}
        - {name: {{ $key }}, value: {{ $value | toString | quote }}}
        {{- end }}
      resources:
        requests:
          {{- toYaml $v.resources.requests | nindent 10 }}
          nvidia.com/gpu: {{ $v.gpusPerPod }}
        limits:
          {{- with $v.resources.limits }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
          nvidia.com/gpu: {{ $v.gpusPerPod }}
      securityContext:
        {{- include "humo-farm.containerSecurity" $root | nindent 8 }}
      volumeMounts:
        - {name: data, mountPath: /var/lib/farm}
        - {name: scratch, mountPath: /tmp}
        {{- if include "humo-farm.weights.enabled" $root }}
        - {name: weights, mountPath: /weights, readOnly: true}
        {{- end }}
        {{- if $v.shmSize }}
        - {name: shm, mountPath: /dev/shm}
        {{- end }}
  volumes:
    - name: data
      emptyDir: {}
    - name: scratch  # a take's inputs and its clip while it uploads
      emptyDir: {}
    {{- if include "humo-farm.weights.enabled" $root }}
    {{- include "humo-farm.weights.volume" $root | nindent 4 }}
    {{- end }}
    {{- if $v.shmSize }}
    - name: shm  # the group's NCCL buffers and pipes: Docker's 64 MiB default is far too small
      emptyDir:
        medium: Memory
        sizeLimit: {{ $v.shmSize }}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
