{{/* Names, labels, and the pod parts every workload (daemon, CronJob, migration, test) shares. */}}

{{- define "rotator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rotator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "rotator.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "rotator.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "rotator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rotator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rotator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "rotator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "rotator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rotator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rotator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "rotator.configMapName" -}}
{{- default (printf "%s-config" (include "rotator.fullname" .)) .Values.config.existingConfigMap }}
{{- end }}

{{/* rotator.yaml: the inline configuration plus the daemon port and Vault auth from the values. */}}
{{- define "rotator.configYaml" -}}
{{- $auth := .Values.vault.auth }}
{{- $vaultAuth := dict "method" $auth.method }}
{{- if eq $auth.method "kubernetes" }}
{{- $_ := set $vaultAuth "role" $auth.kubernetes.role }}
{{- $_ := set $vaultAuth "mount_point" $auth.kubernetes.mountPoint }}
{{- else if eq $auth.method "token" }}
{{- $_ := set $vaultAuth "token_file" "/var/run/secrets/rotator/vault/token" }}
{{- else }}
{{- $_ := set $vaultAuth "role_id" (required "vault.auth.approle.roleId is required for AppRole auth" $auth.approle.roleId) }}
{{- $_ := set $vaultAuth "secret_id_file" "/var/run/secrets/rotator/vault/secret-id" }}
{{- $_ := set $vaultAuth "mount_point" $auth.approle.mountPoint }}
{{- end }}
{{- $config := deepCopy .Values.config.inline }}
{{- if hasKey (default (dict) (get $config "daemon")) "port" }}
{{- fail "config.inline.daemon.port: set the value daemon.port instead (the chart sets the port in rotator.yaml and on the container)" }}
{{- end }}
{{- if hasKey (default (dict) (get $config "vault")) "auth" }}
{{- fail "config.inline.vault.auth: set the values vault.auth.* instead (the chart mounts the credentials the method needs)" }}
{{- end }}
{{- $vault := default (dict) (get $config "vault") }}
{{- $_ := set $vault "auth" $vaultAuth }}
{{- $_ := set $config "vault" $vault }}
{{- $daemon := default (dict) (get $config "daemon") }}
{{- $_ := set $daemon "port" (int .Values.daemon.port) }}
{{- $_ := set $config "daemon" $daemon }}
{{- toYaml $config }}
{{- end }}

{{/* The pod's volumes: configuration, a writable /tmp, Vault credential files, extras. */}}
{{- define "rotator.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap | default (include "rotator.configMapName" .root) }}
- name: tmp
  emptyDir: {}
{{- $auth := .root.Values.vault.auth }}
{{- if eq $auth.method "token" }}
- name: vault-credentials
  secret:
    secretName: {{ required "vault.auth.token.existingSecret is required for token auth" $auth.token.existingSecret }}
    defaultMode: 0400
    items:
      - {key: {{ $auth.token.key }}, path: token}
{{- else if eq $auth.method "approle" }}
- name: vault-credentials
  secret:
    secretName: {{ required "vault.auth.approle.existingSecret is required for AppRole auth" $auth.approle.existingSecret }}
    defaultMode: 0400
    items:
      - {key: {{ $auth.approle.key }}, path: secret-id}
{{- end }}
{{- with .root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The rotator container's shared part: image, environment, mounts, hardening. */}}
{{- define "rotator.containerBase" -}}
image: {{ include "rotator.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- with .Values.envFromSecrets }}
envFrom:
{{- range . }}
  - secretRef: {name: {{ . }}}
{{- end }}
{{- end }}
env:
  - {name: ROTATOR_CONFIG, value: /etc/rotator/rotator.yaml}
  - {name: ROTATOR_DAEMON_HOST, value: "0.0.0.0"}
  # The audit trail's actor: which pod and service account acted (rotator/audit/actor.py).
  - name: POD_NAME
    valueFrom: {fieldRef: {fieldPath: metadata.name}}
  - name: POD_SERVICE_ACCOUNT
    valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}
{{- with .Values.env }}
{{ toYaml . | indent 2 }}
{{- end }}
volumeMounts:
  - {name: config, mountPath: /etc/rotator, readOnly: true}
  - {name: tmp, mountPath: /tmp}
{{- if ne .Values.vault.auth.method "kubernetes" }}
  - {name: vault-credentials, mountPath: /var/run/secrets/rotator/vault, readOnly: true}
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . | indent 2 }}
{{- end }}
securityContext:
{{ toYaml .Values.securityContext | indent 2 }}
{{- end }}

{{/* Pod-level settings every rotator pod shares. */}}
{{- define "rotator.podSettings" -}}
securityContext:
{{ toYaml .Values.podSecurityContext | indent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{ toYaml . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
{{ toYaml . }}
{{- end }}
{{- with .Values.affinity }}
affinity:
{{ toYaml . | indent 2 }}
{{- end }}
{{- end }}

{{/* Pod annotations: the configuration's checksum (a change rolls the pods), legacy scrape hints, extras. */}}
{{- define "rotator.podAnnotations" -}}
{{- $root := .root }}
{{- if not $root.Values.config.existingConfigMap }}
checksum/config: {{ include "rotator.configYaml" $root | sha256sum }}
{{- end }}
{{- if .scrape }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $root.Values.daemon.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with $root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}
