{{/*
Names. The full name leaves room for the longest suffix ("-scheduler") within 63 characters.
*/}}
{{- define "leoflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "leoflow.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "leoflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels: every object's, and the selector's (with the component: api, scheduler, migrate).
*/}}
{{- define "leoflow.labels" -}}
helm.sh/chart: {{ include "leoflow.chart" . }}
{{ include "leoflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: leoflow
{{- end }}

{{- define "leoflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leoflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The images. */}}
{{- define "leoflow.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "leoflow.taskImage" -}}
{{- printf "%s:%s" .Values.tasks.image.repository (default (printf "%s-python3.11" .Chart.AppVersion) .Values.tasks.image.tag) }}
{{- end }}

{{/* The scheduler Service, which agents dial. */}}
{{- define "leoflow.schedulerService" -}}
{{- printf "%s-scheduler" (include "leoflow.fullname" .) }}
{{- end }}

{{- define "leoflow.advertiseGrpc" -}}
{{- if .Values.scheduler.advertiseGrpc }}
{{- .Values.scheduler.advertiseGrpc }}
{{- else }}
{{- printf "%s.%s.svc.%s:9091" (include "leoflow.schedulerService" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}
{{- end }}

{{/* The task namespaces, each once, sorted. */}}
{{- define "leoflow.taskNamespaces" -}}
{{- values .Values.taskNamespaces | uniq | sortAlpha | toJson }}
{{- end }}

{{/*
Where each secret comes from: a Secret the user manages (existingSecret) or the one the chart
makes from inline values. Each gives {"name": …, "key": …}.
*/}}
{{- define "leoflow.secretName" -}}
{{- include "leoflow.fullname" . }}
{{- end }}

{{- define "leoflow.databaseSecret" -}}
{{- if .Values.database.existingSecret }}
{{- dict "name" .Values.database.existingSecret "key" .Values.database.existingSecretKey | toJson }}
{{- else }}
{{- dict "name" (include "leoflow.secretName" .) "key" "database-url" | toJson }}
{{- end }}
{{- end }}

{{- define "leoflow.redisSecret" -}}
{{- if .Values.redis.existingSecret }}
{{- dict "name" .Values.redis.existingSecret "key" .Values.redis.existingSecretKey | toJson }}
{{- else }}
{{- dict "name" (include "leoflow.secretName" .) "key" "redis-url" | toJson }}
{{- end }}
{{- end }}

{{- define "leoflow.keysSecret" -}}
{{- if .Values.keys.existingSecret }}
{{- dict "name" .Values.keys.existingSecret "key" .Values.keys.existingSecretKey | toJson }}
{{- else }}
{{- dict "name" (include "leoflow.secretName" .) "key" "keys.json" | toJson }}
{{- end }}
{{- end }}

{{- define "leoflow.adminSecret" -}}
{{- if .Values.auth.admin.existingSecret }}
{{- dict "name" .Values.auth.admin.existingSecret "key" .Values.auth.admin.existingSecretKey | toJson }}
{{- else }}
{{- dict "name" (include "leoflow.secretName" .) "key" "admin-password" | toJson }}
{{- end }}
{{- end }}

{{- define "leoflow.oidcSecret" -}}
{{- if .Values.auth.oidc.existingSecret }}
{{- dict "name" .Values.auth.oidc.existingSecret "key" .Values.auth.oidc.existingSecretKey | toJson }}
{{- else }}
{{- dict "name" (include "leoflow.secretName" .) "key" "oidc-client-secret" | toJson }}
{{- end }}
{{- end }}

{{/* Whether the chart makes a Secret: some secret is given inline. */}}
{{- define "leoflow.hasInlineSecrets" -}}
{{- $oidc := and (eq .Values.auth.mode "oidc") .Values.auth.oidc.clientSecret }}
{{- $admin := and (eq .Values.auth.mode "admin") .Values.auth.admin.password }}
{{- if or .Values.database.url .Values.redis.url .Values.keys.fileContent $admin $oidc }}true{{ end }}
{{- end }}

{{/*
Render-time refusals: what values.schema.json cannot say, each naming the value to set.
*/}}
{{- define "leoflow.validate" -}}
{{- $v := .Values }}
{{- if and $v.database.url $v.database.existingSecret }}
{{- fail "database: set database.url or database.existingSecret, not both" }}
{{- end }}
{{- if not (or $v.database.url $v.database.existingSecret) }}
{{- fail "database.url or database.existingSecret is required: Leoflow Pro runs on an external Postgres (postgres://USER:PASSWORD@HOST:5432/DB), never on one of its own" }}
{{- end }}
{{- if and $v.redis.url $v.redis.existingSecret }}
{{- fail "redis: set redis.url or redis.existingSecret, not both" }}
{{- end }}
{{- if not (or $v.redis.url $v.redis.existingSecret) }}
{{- fail "redis.url or redis.existingSecret is required: Leoflow Pro's replicas share sessions and signs of life through an external Redis (redis://, rediss:// or redis+sentinel://)" }}
{{- end }}
{{- if and $v.keys.fileContent $v.keys.existingSecret }}
{{- fail "keys: set keys.existingSecret or keys.fileContent, not both" }}
{{- end }}
{{- if not (or $v.keys.fileContent $v.keys.existingSecret) }}
{{- fail "keys.existingSecret or keys.fileContent is required: the replicas share their session and encryption keys from one file; make it once with `leoflow server keys generate -o keys.json`, then `kubectl create secret generic leoflow-keys --from-file=keys.json` and set keys.existingSecret=leoflow-keys" }}
{{- end }}
{{- if eq $v.auth.mode "admin" }}
{{- if and $v.auth.admin.password $v.auth.admin.existingSecret }}
{{- fail "auth.admin: set auth.admin.password or auth.admin.existingSecret, not both" }}
{{- end }}
{{- if not (or $v.auth.admin.password $v.auth.admin.existingSecret) }}
{{- fail "auth.admin.existingSecret or auth.admin.password is required with auth.mode admin (the admin's password, at least 8 characters); or use auth.mode oidc" }}
{{- end }}
{{- if and $v.auth.admin.password (lt (len $v.auth.admin.password) 8) }}
{{- fail "auth.admin.password: at least 8 characters" }}
{{- end }}
{{- end }}
{{- if eq $v.auth.mode "oidc" }}
{{- if not $v.baseUrl }}
{{- fail "baseUrl is required with auth.mode oidc: the provider sends people back to {baseUrl}/auth/oidc/callback" }}
{{- end }}
{{- if not $v.auth.oidc.issuer }}
{{- fail "auth.oidc.issuer is required with auth.mode oidc" }}
{{- end }}
{{- if not $v.auth.oidc.clientId }}
{{- fail "auth.oidc.clientId is required with auth.mode oidc" }}
{{- end }}
{{- if and $v.auth.oidc.clientSecret $v.auth.oidc.existingSecret }}
{{- fail "auth.oidc: set auth.oidc.clientSecret or auth.oidc.existingSecret, not both" }}
{{- end }}
{{- if not (or $v.auth.oidc.clientSecret $v.auth.oidc.existingSecret) }}
{{- fail "auth.oidc.existingSecret or auth.oidc.clientSecret is required with auth.mode oidc (the confidential client's secret)" }}
{{- end }}
{{- end }}
{{- range $tenant, $namespace := $v.taskNamespaces }}
{{- if eq $namespace $.Release.Namespace }}
{{- fail (printf "taskNamespaces.%s: %q is the release's own namespace; task pods run apart from the control plane (its Secrets and pods are not theirs to reach)" $tenant $namespace) }}
{{- end }}
{{- end }}
{{- range $tenant, $_ := $v.taskNamespaces }}
{{- if not (regexMatch "^[a-z0-9][a-z0-9_-]{0,62}$" $tenant) }}
{{- fail (printf "taskNamespaces: %q is not a tenant name: use 1 to 63 lowercase letters, digits, `_` or `-`, starting with a letter or a digit" $tenant) }}
{{- end }}
{{- end }}
{{- if and $v.agentTLS.enabled (not $v.agentTLS.existingSecret) }}
{{- fail "agentTLS.existingSecret is required with agentTLS.enabled: a Secret holding tls.crt, tls.key and ca.crt (cert-manager's layout) for the name agents dial" }}
{{- end }}
{{- if and $v.ingress.enabled (not $v.ingress.host) }}
{{- fail "ingress.host is required with ingress.enabled" }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas is above autoscaling.maxReplicas" }}
{{- end }}
{{- end }}

{{/* The server's configuration file of a role ("api" or "scheduler"), as YAML. */}}
{{- define "leoflow.serverConfig" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $config := dict
  "host" "0.0.0.0"
  "http_port" 8080
  "grpc_port" 9091
  "metrics_port" 9090
  "database_url_file" "/etc/leoflow/secrets/database-url"
  "database_pool_size" $v.database.poolSize
  "database_statement_timeout" $v.database.statementTimeout
  "redis_url_file" "/etc/leoflow/secrets/redis-url"
  "keys_file" "/etc/leoflow/secrets/keys.json"
  "executor" "kubernetes"
  "log_retention" $v.logRetention
}}
{{- if $v.otlpEndpoint }}
{{- $_ := set $config "otlp_endpoint" $v.otlpEndpoint }}
{{- end }}
{{- if $v.baseUrl }}
{{- $_ := set $config "base_url" $v.baseUrl }}
{{- end }}
{{- if eq .role "api" }}
{{- $_ := set $config "ui_dir" "/opt/leoflow/ui" }}
{{- $auth := dict "mode" $v.auth.mode }}
{{- if $v.auth.trustedProxies }}
{{- $_ := set $auth "trusted_proxies" $v.auth.trustedProxies }}
{{- end }}
{{- if eq $v.auth.mode "admin" }}
{{- $_ := set $config "admin_password_file" "/etc/leoflow/secrets/admin-password" }}
{{- else }}
{{- $o := $v.auth.oidc }}
{{- $oidc := dict
  "issuer" $o.issuer
  "client_id" $o.clientId
  "client_secret_file" "/etc/leoflow/secrets/oidc-client-secret"
  "scopes" $o.scopes
  "roles_claim" $o.rolesClaim
  "tenant_claim" $o.tenantClaim
  "role_map" $o.roleMap
}}
{{- if $o.audience }}
{{- $_ := set $oidc "audience" $o.audience }}
{{- end }}
{{- if $o.cliClientId }}
{{- $_ := set $oidc "cli_client_id" $o.cliClientId }}
{{- end }}
{{- $_ := set $auth "oidc" $oidc }}
{{- end }}
{{- $_ := set $config "auth" $auth }}
{{- else }}
{{- $_ := set $config "advertise_grpc" (include "leoflow.advertiseGrpc" $root) }}
{{- $_ := set $config "dispatch_buffer" $v.scheduler.dispatchBuffer }}
{{- $_ := set $config "dispatch_workers" $v.scheduler.dispatchWorkers }}
{{- $t := $v.tasks }}
{{- $podDefaults := dict
  "service_account" $t.serviceAccount.name
  "node_selector" $t.nodeSelector
  "tolerations" $t.tolerations
  "affinity" $t.affinity
  "labels" $t.labels
  "annotations" $t.annotations
  "resources" $t.resources
}}
{{- $_ := set $config "kubernetes" (dict
  "namespaces" $v.taskNamespaces
  "image" (include "leoflow.taskImage" $root)
  "max_pods_per_namespace" $t.maxPodsPerNamespace
  "unschedulable_timeout" $t.unschedulableTimeout
  "pod_defaults" $podDefaults
) }}
{{- if $v.agentTLS.enabled }}
{{- $_ := set $config "agent_tls" (dict
  "cert_file" "/etc/leoflow/agent-tls/tls.crt"
  "key_file" "/etc/leoflow/agent-tls/tls.key"
  "ca_file" "/etc/leoflow/agent-tls/ca.crt"
) }}
{{- else }}
{{- $_ := set $config "allow_plaintext_agents" true }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}
