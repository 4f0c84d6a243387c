{{- define "flowloom.labels" -}}
app.kubernetes.io/name: flowloom
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "flowloom.selector" -}}
app.kubernetes.io/name: flowloom
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "flowloom.databaseSecret" -}}
{{- if eq .Values.database.mode "cnpg" -}}
name: {{ .Release.Name }}-db-app
key: uri
{{- else -}}
name: {{ .Values.database.existingSecret }}
key: url
{{- end }}
{{- end }}

{{/* Key provider settings (docs/keys.md), shared by server and gateway. */}}
{{- define "flowloom.keyEnv" -}}
- name: FLOWLOOM_HOME
  value: /var/lib/flowloom
{{- if eq .Values.keys.provider "pkcs11" }}
- name: FLOWLOOM_SIGNING_KEYS
  value: pkcs11
- name: FLOWLOOM_MASTER_KEY
  value: pkcs11
- name: FLOWLOOM_PKCS11_MODULE
  value: {{ .Values.keys.pkcs11.module | quote }}
- name: FLOWLOOM_PKCS11_TOKEN
  value: {{ .Values.keys.pkcs11.token | quote }}
- name: FLOWLOOM_PKCS11_PIN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.keys.pkcs11.pinSecret }}
      key: pin
{{- else if eq .Values.keys.provider "kms" }}
- name: FLOWLOOM_MASTER_KEY
  value: kms
- name: FLOWLOOM_KMS_KEY_ID
  value: {{ .Values.keys.kms.keyId | quote }}
- name: FLOWLOOM_KMS_REGION
  value: {{ .Values.keys.kms.region | quote }}
{{- end }}
{{- end }}

{{- define "flowloom.volumes" -}}
- name: home
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if ne .Values.keys.provider "pkcs11" }}
- name: keys
  secret:
    secretName: {{ .Values.keys.existingSecret }}
    defaultMode: 0400
{{- end }}
{{- end }}

{{- define "flowloom.mounts" -}}
- name: home
  mountPath: /var/lib/flowloom
- name: tmp
  mountPath: /tmp
{{- if ne .Values.keys.provider "pkcs11" }}
- name: keys
  mountPath: /var/lib/flowloom/keys
  readOnly: true
{{- end }}
{{- end }}

{{- define "flowloom.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "flowloom.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}
