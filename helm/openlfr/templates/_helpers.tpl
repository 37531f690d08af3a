{{/* Names and labels ------------------------------------------------------------------------ */}}

{{- define "openlfr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "openlfr.fullname" -}}
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

{{/* A component's resource name: <fullname>-<component>, at most 63 characters. */}}
{{- define "openlfr.componentName" -}}
{{- printf "%s-%s" (include "openlfr.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component }}
{{- end }}

{{- define "openlfr.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The services of the release's role (values `role`), in pipeline order: `site` is the whole
     pipeline on one cluster; `van` adds the link to the force's core; `core` is the force's
     platform (the console for reports and the fleet, the intake of what vans forward, the public
     deployment events). */}}
{{- define "openlfr.services" -}}
{{- if eq .Values.role "core" -}}
review intake deployment-events
{{- else if eq .Values.role "van" -}}
ingest detect embed matcher dispatch review link
{{- else -}}
ingest detect embed matcher dispatch review deployment-events
{{- end }}
{{- end }}

{{/* The services that consume Kafka: KEDA or an HPA may scale them. */}}
{{- define "openlfr.consumers" -}}
detect embed matcher dispatch
{{- end }}

{{/* Labels: call with (dict "root" $ "component" "detect"). */}}
{{- define "openlfr.labels" -}}
helm.sh/chart: {{ include "openlfr.chart" .root }}
{{ include "openlfr.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: openlfr
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "openlfr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "openlfr.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "openlfr.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "openlfr.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "openlfr.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Settings -------------------------------------------------------------------------------- */}}

{{/* The effective settings of a component: its own settings over the shared ones.
     Call with (dict "root" $ "settings" <component settings map>); returns YAML. */}}
{{- define "openlfr.effectiveSettings" -}}
{{- $merged := mergeOverwrite (deepCopy (default (dict) .root.Values.settings)) (deepCopy (default (dict) .settings)) }}
{{- toYaml $merged }}
{{- end }}

{{/* One env value as the settings class parses it. Helm reads every number as a float64, which
     prints large integers in exponent form (8.2944e+06): integral numbers print as integers. */}}
{{- define "openlfr.envValue" -}}
{{- if kindIs "float64" . }}
{{- if eq (floor .) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if kindIs "bool" . }}
{{- ternary "true" "false" . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/* LFR_* env vars from settings: camelCase key -> LFR_<SNAKE_UPPER>. A null value is no
     variable (the service default applies). matchThresholds goes through the ConfigMap, and
     the SASL username through the Secret when kafka.sasl.usernameKey names one.
     Call with (dict "root" $ "settings" <component settings map>). */}}
{{- define "openlfr.settingsEnv" -}}
{{- $settings := include "openlfr.effectiveSettings" . | fromYaml }}
{{- $elsewhere := list "matchThresholds" }}
{{- if and .root.Values.kafka.sasl.existingSecret .root.Values.kafka.sasl.usernameKey }}
{{- $elsewhere = append $elsewhere "kafkaSaslUsername" }}
{{- end }}
{{- range $key := keys $settings | sortAlpha }}
{{- $value := get $settings $key }}
{{- if and (not (kindIs "invalid" $value)) (not (has $key $elsewhere)) }}
- name: {{ printf "LFR_%s" (snakecase $key | upper) }}
  value: {{ include "openlfr.envValue" $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Kafka credentials: only from existing Secrets. */}}
{{- define "openlfr.kafkaSecretEnv" -}}
{{- $kafka := .Values.kafka }}
{{- with $kafka.sasl }}
{{- if .existingSecret }}
- name: LFR_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .passwordKey }}
{{- if .usernameKey }}
- name: LFR_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .usernameKey }}
{{- end }}
{{- end }}
{{- end }}
{{- if $kafka.tls.ca.existingSecret }}
- name: LFR_KAFKA_SSL_CA_LOCATION
  value: /etc/openlfr/kafka-tls/ca.crt
{{- end }}
{{- with $kafka.tls.client }}
{{- if .existingSecret }}
- name: LFR_KAFKA_SSL_CERTIFICATE_LOCATION
  value: /etc/openlfr/kafka-tls/client.crt
- name: LFR_KAFKA_SSL_KEY_LOCATION
  value: /etc/openlfr/kafka-tls/client.key
{{- if .keyPasswordKey }}
- name: LFR_KAFKA_SSL_KEY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .keyPasswordKey }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "openlfr.kafkaTlsEnabled" -}}
{{- if or .Values.kafka.tls.ca.existingSecret .Values.kafka.tls.client.existingSecret }}true{{ end }}
{{- end }}

{{- define "openlfr.kafkaTlsVolume" -}}
{{- if include "openlfr.kafkaTlsEnabled" . }}
- name: kafka-tls
  projected:
    defaultMode: 288  # 0440: readable by the pod's group (fsGroup) only
    sources:
      {{- with .Values.kafka.tls.ca }}
      {{- if .existingSecret }}
      - secret:
          name: {{ .existingSecret }}
          items:
            - key: {{ .key }}
              path: ca.crt
      {{- end }}
      {{- end }}
      {{- with .Values.kafka.tls.client }}
      {{- if .existingSecret }}
      - secret:
          name: {{ .existingSecret }}
          items:
            - key: {{ .certificateKey }}
              path: client.crt
            - key: {{ .keyKey }}
              path: client.key
      {{- end }}
      {{- end }}
{{- end }}
{{- end }}

{{- define "openlfr.kafkaTlsMount" -}}
{{- if include "openlfr.kafkaTlsEnabled" . }}
- name: kafka-tls
  mountPath: /etc/openlfr/kafka-tls
  readOnly: true
{{- end }}
{{- end }}

{{/* Hardening ------------------------------------------------------------------------------- */}}

{{- define "openlfr.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "openlfr.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "openlfr.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- end }}

{{- define "openlfr.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Pod spec fields shared by every workload: call with (dict "root" $ "component" <values map or dict>),
     plus "serviceAccountName" for hooks that run before the chart's ServiceAccount exists. */}}
{{- define "openlfr.podCommon" -}}
{{- $root := .root }}
{{- $c := .component }}
serviceAccountName: {{ default (include "openlfr.serviceAccountName" $root) .serviceAccountName }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- include "openlfr.podSecurityContext" $root | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $root.Values.priorityClassName $c.priorityClassName) }}
priorityClassName: {{ . }}
{{- end }}
{{- with (default $root.Values.nodeSelector $c.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $root.Values.tolerations $c.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $root.Values.affinity $c.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $root.Values.topologySpreadConstraints $c.topologySpreadConstraints) }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The metrics port of a service: its own settings, else the shared ones, else 9100. */}}
{{- define "openlfr.metricsPort" -}}
{{- $settings := include "openlfr.effectiveSettings" (dict "root" .root "settings" .settings) | fromYaml }}
{{- int64 (default 9100 (get $settings "metricsPort")) }}
{{- end }}

{{/* Cross-field checks the schema cannot state clearly: fail with the values key to fix. */}}
{{- define "openlfr.validate" -}}
{{- $v := .Values }}
{{- if and (eq $v.role "van") $v.link.enabled (not $v.link.settings.linkCoreBootstrapServers) }}
{{- fail "role van: set link.settings.linkCoreBootstrapServers (the force's core the van connects out to)" }}
{{- end }}
{{- if and $v.autoscaling.keda.enabled $v.autoscaling.hpa.enabled }}
{{- fail "autoscaling: enable KEDA (autoscaling.keda.enabled) or the HPA (autoscaling.hpa.enabled), not both" }}
{{- end }}
{{- range $name := include "openlfr.services" . | splitList " " }}
{{- $svc := index $v $name }}
{{- $s := include "openlfr.effectiveSettings" (dict "root" $ "settings" $svc.settings) | fromYaml }}
{{- $protocol := default "PLAINTEXT" $s.kafkaSecurityProtocol }}
{{- if and $v.kafka.sasl.perComponentUsers $s.kafkaSaslUsername }}
{{- fail (printf "%s: kafka.sasl.perComponentUsers sets each pod's user; unset settings.kafkaSaslUsername" $name) }}
{{- end }}
{{- if and (hasPrefix "SASL_" $protocol) (not $v.kafka.sasl.perComponentUsers) }}
{{- if not $v.kafka.sasl.existingSecret }}
{{- fail (printf "%s: kafkaSecurityProtocol %s needs kafka.sasl.existingSecret (the password is never a plain value)" $name $protocol) }}
{{- end }}
{{- if not $s.kafkaSaslMechanism }}
{{- fail (printf "%s: kafkaSecurityProtocol %s needs settings.kafkaSaslMechanism" $name $protocol) }}
{{- end }}
{{- if and (not $s.kafkaSaslUsername) (not $v.kafka.sasl.usernameKey) }}
{{- fail (printf "%s: kafkaSecurityProtocol %s needs settings.kafkaSaslUsername or kafka.sasl.usernameKey" $name $protocol) }}
{{- end }}
{{- end }}
{{- if and (include "openlfr.kafkaTlsEnabled" $) (not (hasSuffix "SSL" $protocol)) }}
{{- fail (printf "%s: kafka.tls is set but kafkaSecurityProtocol is %s (use SSL or SASL_SSL)" $name $protocol) }}
{{- end }}
{{- if and $v.autoscaling.keda.enabled (ne $protocol "PLAINTEXT") (not $v.autoscaling.keda.triggerAuthenticationRef) }}
{{- fail "autoscaling.keda.triggerAuthenticationRef: KEDA needs a TriggerAuthentication to reach a Kafka cluster with TLS or SASL" }}
{{- end }}
{{- $heartbeat := default 3000 $s.heartbeatIntervalMs }}
{{- $session := default 45000 $s.sessionTimeoutMs }}
{{- if gt (mul (int64 $heartbeat) 3) (int64 $session) }}
{{- fail (printf "%s.settings: heartbeatIntervalMs must be at most a third of sessionTimeoutMs" $name) }}
{{- end }}
{{- end }}
{{- if and $v.matcher.qdrant.existingSecret (not $v.matcher.settings.qdrantUrl) }}
{{- fail "matcher.qdrant.existingSecret is set but matcher.settings.qdrantUrl is not (the API key is for a Qdrant server)" }}
{{- end }}
{{- if and $v.dispatch.webhook.existingSecret (not $v.dispatch.settings.webhookUrl) }}
{{- fail "dispatch.webhook.existingSecret is set but dispatch.settings.webhookUrl is not" }}
{{- end }}
{{- if and $v.ingest.cameras $v.ingest.camerasExistingSecret }}
{{- fail "ingest: set ingest.cameras or ingest.camerasExistingSecret, not both" }}
{{- end }}
{{- if $v.networkPolicy.enabled }}
{{- /* Egress goes to named peers only: an empty `to` would let a pod holding faces reach anywhere. */}}
{{- if not $v.networkPolicy.kafka.to }}
{{- fail "networkPolicy.kafka.to: name the broker's peers (podSelector/namespaceSelector/ipBlock); an empty list would allow any destination" }}
{{- end }}
{{- if and $v.matcher.enabled $v.matcher.settings.qdrantUrl (not $v.networkPolicy.qdrant.to) }}
{{- fail "networkPolicy.qdrant.to: name Qdrant's peers (matcher.settings.qdrantUrl is set); an empty list would allow any destination" }}
{{- end }}
{{- if and $v.dispatch.enabled $v.dispatch.settings.webhookUrl (not $v.networkPolicy.webhook.to) }}
{{- fail "networkPolicy.webhook.to: name the webhook hosts (ipBlock CIDRs) for dispatch.settings.webhookUrl; an empty list would allow any destination" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Signing: keyring + signing key mounted from signing.existingSecret, passphrase as env ----- */}}

{{- define "openlfr.signingEnv" -}}
{{- with .Values.signing }}
{{- if .existingSecret }}
- name: LFR_KEYRING_FILE
  value: /etc/openlfr/signing/keyring.json
- name: LFR_SIGNING_KEY_FILE
  value: /etc/openlfr/signing/signing-key.json
- name: LFR_SIGNING_KEY_PASSPHRASE
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .passphraseKey }}
{{- end }}
{{- end }}
{{- end }}

{{- define "openlfr.signingVolume" -}}
{{- with .Values.signing }}
{{- if .existingSecret }}
- name: signing
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 288  # 0440
    items:
      - key: {{ .keyringKey }}
        path: keyring.json
      - key: {{ .keyKey }}
        path: signing-key.json
{{- end }}
{{- end }}
{{- end }}

{{- define "openlfr.signingMount" -}}
{{- if .Values.signing.existingSecret }}
- name: signing
  mountPath: /etc/openlfr/signing
  readOnly: true
{{- end }}
{{- end }}

{{/* Least privilege: with kafka.sasl.perComponentUsers each pod logs in as its own Strimzi
KafkaUser openlfr-<principal> (k8s/overlays/prod/kafka-users.yaml, from services/common/access.toml),
password from the Secret Strimzi names after the user; else the one kafka.sasl Secret. */}}
{{- define "openlfr.kafkaIdentityEnv" -}}
{{- if .root.Values.kafka.sasl.perComponentUsers }}
{{- /* a force's pods log in as that force's principal (templates/kafka-users.yaml); the platform's stays one */ -}}
{{- $force := default "default" .root.Values.settings.force }}
{{- $user := ternary (printf "openlfr-%s" .principal) (printf "openlfr-%s-%s" $force .principal) (or (eq $force "default") (eq .principal "platform")) }}
- name: LFR_KAFKA_SASL_USERNAME
  value: {{ $user }}
- name: LFR_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $user }}
      key: password
{{- else }}
{{- include "openlfr.kafkaSecretEnv" .root }}
{{- end }}
{{- end }}

{{/* The keyring alone (no private key) for services that only verify: ingest, detect, embed, dispatch */}}
{{- define "openlfr.keyringEnv" -}}
{{- if .Values.signing.existingSecret }}
- name: LFR_KEYRING_FILE
  value: /etc/openlfr/signing/keyring.json
{{- end }}
{{- end }}

{{- define "openlfr.keyringVolume" -}}
{{- with .Values.signing }}
{{- if .existingSecret }}
- name: signing
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 288  # 0440
    items:
      - key: {{ .keyringKey }}
        path: keyring.json
{{- end }}
{{- end }}
{{- end }}

{{/* One Strimzi KafkaUser (templates/kafka-users.yaml): SCRAM-SHA-512, simple authorization with
the given ACLs, the given quotas; labelled with its force (empty for platform principals). */}}
{{- define "openlfr.kafkaUser" -}}
apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaUser
metadata:
  name: {{ .user }}
  labels:
    strimzi.io/cluster: {{ .root.Values.kafkaUsers.cluster }}
    app.kubernetes.io/part-of: openlfr
    {{- if .force }}
    openlfr.io/force: {{ .force }}
    {{- end }}
  annotations:
    openlfr.io/purpose: {{ .description | quote }}
spec:
  authentication:
    type: scram-sha-512
  authorization:
    type: simple
    acls:
      {{- toYaml .acls | nindent 6 }}
  {{- with .quotas }}
  quotas:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
