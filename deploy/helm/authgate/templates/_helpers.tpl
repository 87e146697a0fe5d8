{{/*
Every helper takes the root context. In this chart the values are .Values;
in a chart that has authgate as a dependency named "authgate" (the sidecar
way, see README.md) they are .Values.authgate, so the parent's templates
can include "authgate.sidecar", "authgate.volumes" and "authgate.checksums"
with their own root context and get the same names as the ConfigMap and
Secret this chart renders.
*/}}
{{- define "authgate.v" -}}
{{- toYaml (index .Values "authgate" | default .Values) -}}
{{- end }}

{{- define "authgate.name" -}}
{{- $v := include "authgate.v" . | fromYaml -}}
{{- default "authgate" $v.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{- define "authgate.fullname" -}}
{{- $v := include "authgate.v" . | fromYaml -}}
{{- if $v.fullnameOverride -}}
{{- $v.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "authgate.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end }}

{{- define "authgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "authgate.labels" -}}
{{- $v := include "authgate.v" . | fromYaml -}}
{{ include "authgate.selectorLabels" . }}
app.kubernetes.io/component: {{ $v.mode }}
app.kubernetes.io/version: {{ $v.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret the secret files come from. */}}
{{- define "authgate.secretName" -}}
{{- $v := include "authgate.v" . | fromYaml -}}
{{- $v.secret.existingSecret | default (include "authgate.fullname" .) -}}
{{- end }}

{{/*
Pod template annotations that change whenever the configuration or a
Secret this chart creates changes, so that an upgrade rolls the pods:
authgate reads both only at start (there is no hot reload yet).
*/}}
{{- define "authgate.checksums" -}}
{{- $v := include "authgate.v" . | fromYaml -}}
checksum/config: {{ include "authgate.restartConfig" $v.config | sha256sum }}
{{- if not $v.secret.existingSecret }}
checksum/secret: {{ toYaml $v.secret.data | sha256sum }}
{{- end }}
{{- end }}

{{/*
The part of the configuration that authgate reads only at start: the keys
of restartKeys in cmd/authgate/reload.go (keep the two in step). Only a
change here rolls the pods; authgate reloads the rest of the mounted file
by itself once the kubelet has updated the ConfigMap.
*/}}
{{- define "authgate.restartConfig" -}}
{{- $c := . | default dict -}}
{{- $verify := get $c "verify" | default dict -}}
{{- $firebase := get $verify "firebase" | default dict -}}
{{- toYaml (dict
  "top" (pick $c "server" "federation" "cache" "tracing" "auth_api" "usage")
  "log" (pick (get $c "log" | default dict) "format" "buffer_bytes" "flush_interval")
  "ext_authz_grpc" (pick (get $c "ext_authz_grpc" | default dict) "addr" "max_recv_msg_size" "max_concurrent_streams")
  "assertion" (pick (get $c "assertion" | default dict) "enabled" "jwks_path")
  "verify_cache" (get $verify "cache" | default dict)
  "firebase" (pick $firebase "project_id" "revocation")
) -}}
{{- end }}

{{/*
The authgate container, as a list item. The forward-auth Deployment uses
it, and so does another chart's pod template for the sidecar way:

  containers:
    {{- include "authgate.sidecar" . | nindent 8 }}
*/}}
{{- define "authgate.sidecar" -}}
{{- $v := include "authgate.v" . | fromYaml -}}
- name: authgate
  image: "{{ $v.image.repository }}:{{ required "image.tag: pin an authgate release" $v.image.tag }}"
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args: ["serve", "--config", "/etc/authgate/authgate.yaml"]
  {{- with $v.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - name: http
      containerPort: {{ $v.ports.http }}
      protocol: TCP
    - name: admin
      containerPort: {{ $v.ports.admin }}
      protocol: TCP
  readinessProbe:
    httpGet:
      path: /readyz
      port: admin
    {{- toYaml $v.readinessProbe | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: admin
    {{- toYaml $v.livenessProbe | nindent 4 }}
  resources:
    {{- $_ := required "resources.limits.memory: authgate sizes its Go memory limit from it" (dig "limits" "memory" "" $v.resources) }}
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  volumeMounts:
    - name: authgate-config
      mountPath: /etc/authgate
      readOnly: true
    - name: authgate-secrets
      mountPath: {{ $v.secret.mountPath }}
      readOnly: true
{{- end }}

{{/* The volumes "authgate.sidecar" mounts, as list items. */}}
{{- define "authgate.volumes" -}}
{{- $v := include "authgate.v" . | fromYaml -}}
- name: authgate-config
  configMap:
    name: {{ include "authgate.fullname" . }}
    items:
      - key: authgate.yaml
        path: authgate.yaml
- name: authgate-secrets
  secret:
    secretName: {{ include "authgate.secretName" . }}
    defaultMode: 0440
{{- end }}
