{{/*
The pod template of a role's Deployment: dict "root" $ "role" "api"|"scheduler".
*/}}
{{- define "leoflow.podTemplate" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $role := .role }}
{{- $component := index $v $role -}}
metadata:
  labels:
    {{- include "leoflow.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $role }}
    {{- with $component.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A new configuration or secret rolls the replicas.
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    {{- with $component.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "leoflow.fullname" $root }}-{{ $role }}
  automountServiceAccountToken: {{ eq $role "scheduler" }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: 30
  containers:
    - name: leoflow
      image: {{ include "leoflow.image" $root | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command: ["/usr/local/bin/leoflow"]
      args: ["server", "--config", "/etc/leoflow/config/server.yaml", "--role", {{ $role | quote }}]
      ports:
        {{- if eq $role "api" }}
        - name: http
          containerPort: 8080
          protocol: TCP
        {{- else }}
        - name: grpc
          containerPort: 9091
          protocol: TCP
        {{- end }}
        - name: metrics
          containerPort: 9090
          protocol: TCP
      env:
        - name: HOME
          value: /tmp
        - name: LEOFLOW_HOME
          value: /tmp/leoflow
        - name: LEOFLOW_LOG_FORMAT
          value: {{ $v.logFormat | quote }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      # /healthz: the process answers (a datastore outage never restarts a replica);
      # /readyz: Postgres answers and the schema is this binary's.
      startupProbe:
        httpGet:
          path: /healthz
          port: metrics
        periodSeconds: {{ $v.probes.startup.periodSeconds }}
        failureThreshold: {{ $v.probes.startup.failureThreshold }}
        timeoutSeconds: {{ $v.probes.startup.timeoutSeconds }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
        periodSeconds: {{ $v.probes.readiness.periodSeconds }}
        failureThreshold: {{ $v.probes.readiness.failureThreshold }}
        timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        periodSeconds: {{ $v.probes.liveness.periodSeconds }}
        failureThreshold: {{ $v.probes.liveness.failureThreshold }}
        timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
      resources:
        {{- toYaml $component.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/leoflow/config
          readOnly: true
        - name: secrets
          mountPath: /etc/leoflow/secrets
          readOnly: true
        {{- if and (eq $role "scheduler") $v.agentTLS.enabled }}
        - name: agent-tls
          mountPath: /etc/leoflow/agent-tls
          readOnly: true
        {{- end }}
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "leoflow.fullname" $root }}
        items:
          - key: {{ $role }}.yaml
            path: server.yaml
    # Read by the server's user only (the fsGroup makes them 0440: the keys file must not be
    # readable by others).
    - name: secrets
      projected:
        defaultMode: 0400
        sources:
          {{- $database := include "leoflow.databaseSecret" $root | fromJson }}
          - secret:
              name: {{ $database.name }}
              items:
                - key: {{ $database.key | quote }}
                  path: database-url
          {{- $redis := include "leoflow.redisSecret" $root | fromJson }}
          - secret:
              name: {{ $redis.name }}
              items:
                - key: {{ $redis.key | quote }}
                  path: redis-url
          {{- $keys := include "leoflow.keysSecret" $root | fromJson }}
          - secret:
              name: {{ $keys.name }}
              items:
                - key: {{ $keys.key | quote }}
                  path: keys.json
          {{- if eq $role "api" }}
          {{- if eq $v.auth.mode "admin" }}
          {{- $admin := include "leoflow.adminSecret" $root | fromJson }}
          - secret:
              name: {{ $admin.name }}
              items:
                - key: {{ $admin.key | quote }}
                  path: admin-password
          {{- else }}
          {{- $oidc := include "leoflow.oidcSecret" $root | fromJson }}
          - secret:
              name: {{ $oidc.name }}
              items:
                - key: {{ $oidc.key | quote }}
                  path: oidc-client-secret
          {{- end }}
          {{- end }}
    {{- if and (eq $role "scheduler") $v.agentTLS.enabled }}
    # The scheduler's certificate and the agents' CA (cert-manager's Secret layout).
    - name: agent-tls
      secret:
        secretName: {{ $v.agentTLS.existingSecret }}
        defaultMode: 0400
        items:
          - key: tls.crt
            path: tls.crt
          - key: tls.key
            path: tls.key
          - key: ca.crt
            path: ca.crt
    {{- end }}
    - name: tmp
      emptyDir: {}
  {{- with $component.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $component.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $component.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $component.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
