{{/* The release's base name: the release name, or release-chart when it lacks the chart's. */}}
{{- define "hxp.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "hxp.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" NAME). */}}
{{- define "hxp.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hxp.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Seconds of a duration written as whole seconds, minutes or hours (30s, 2m, 1h). */}}
{{- define "hxp.seconds" -}}
{{- $d := toString . -}}
{{- if not (regexMatch "^[0-9]+[smh]$" $d) -}}
{{- fail (printf "config.server.shutdown_grace: %q: write whole seconds, minutes or hours (30s, 2m, 1h) for the chart to size terminationGracePeriodSeconds" $d) -}}
{{- end -}}
{{- $n := trimSuffix "s" (trimSuffix "m" (trimSuffix "h" $d)) | int -}}
{{- if hasSuffix "h" $d }}{{ mul $n 3600 }}{{ else if hasSuffix "m" $d }}{{ mul $n 60 }}{{ else }}{{ $n }}{{ end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: the drain, then shutdown_grace, then 15s to exit. */}}
{{- define "hxp.terminationGrace" -}}
{{- $grace := include "hxp.seconds" (dig "server" "shutdown_grace" "30s" (.Values.config | default dict)) | int -}}
{{- add $grace (int .Values.drainSeconds) 15 -}}
{{- end -}}

{{/*
The hxp.yaml settings of a pod, as YAML: values.config with overlay merged over it, the
listen address and the API keys file. Secrets and the fields the chart writes are refused.
(dict "root" $ "overlay" DICT)
*/}}
{{- define "hxp.baseConfig" -}}
{{- $c := mustMergeOverwrite (deepCopy (.root.Values.config | default dict)) (deepCopy (.overlay | default dict)) -}}
{{- with .root -}}
{{- range $f := list "listen" "models" "upstreams" -}}
{{- if hasKey $c $f -}}
{{- fail (printf "config.%s: the chart writes %s itself; use port, modelGroups and the groups' models instead" $f $f) -}}
{{- end -}}
{{- end -}}
{{- range $s := list "postgres" "redis" -}}
{{- if dig $s "url" "" $c -}}
{{- fail (printf "config.%s.url: connection URLs are secrets and never go into a ConfigMap; put it in the Secret secrets.name under the key named by secrets.%sURL" $s $s) -}}
{{- end -}}
{{- end -}}
{{- range $k := list "api_keys_file" "admin_key_file" "node_key_file" -}}
{{- if dig "auth" $k "" $c -}}
{{- fail (printf "config.auth.%s: key files come from the Secret (secrets.apiKeys, secrets.adminKey, secrets.nodeKey)" $k) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $c "listen" (printf ":%d" (int .Values.port)) -}}
{{- if and .Values.secrets.name .Values.secrets.apiKeys -}}
{{- $auth := deepCopy (get $c "auth" | default dict) -}}
{{- $_ := set $auth "api_keys_file" "/etc/hxp/secrets/api-keys" -}}
{{- $_ := set $c "auth" $auth -}}
{{- end -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* Environment variables taken from the Secret. */}}
{{- define "hxp.secretEnv" -}}
{{- $s := .Values.secrets -}}
{{- if $s.name -}}
{{- range $env, $key := dict "HXP_AUTH_ADMIN_KEY" $s.adminKey "HXP_AUTH_NODE_KEY" $s.nodeKey "HXP_POSTGRES_URL" $s.postgresURL "HXP_REDIS_URL" $s.redisURL -}}
{{- if $key }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $s.name }}
      key: {{ $key }}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The hxp container and pod settings shared by gateways and model nodes:
(dict "root" $ "config" CONFIGMAP "startupSeconds" N "resources" R "extraMounts" LIST).
*/}}
{{- define "hxp.container" -}}
{{- $root := .root -}}
name: hxp
image: {{ include "hxp.image" $root }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
args: ["serve", "--config", "/etc/hxp/hxp.yaml"]
ports:
  - name: http
    containerPort: {{ $root.Values.port }}
    protocol: TCP
{{- with include "hxp.secretEnv" $root }}
env:
{{- . | nindent 2 }}
{{- end }}
# Loading models takes minutes: startup waits for readiness (a loading model is not
# ready) for up to startupSeconds before liveness starts counting.
startupProbe:
  httpGet: {path: /health/ready, port: http}
  periodSeconds: 5
  failureThreshold: {{ div (int .startupSeconds) 5 | max 1 }}
readinessProbe:
  httpGet: {path: /health/ready, port: http}
  periodSeconds: 5
  failureThreshold: 2
livenessProbe:
  httpGet: {path: /health, port: http}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
lifecycle:
  # Keep serving while the endpoint is removed from Services and gateways, then SIGTERM
  # starts HXP's own drain (server.shutdown_grace).
  preStop:
    sleep:
      seconds: {{ int $root.Values.drainSeconds }}
resources:
  {{- toYaml .resources | nindent 2 }}
securityContext:
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
workingDir: /var/lib/hxp
volumeMounts:
  - name: config
    mountPath: /etc/hxp/hxp.yaml
    subPath: hxp.yaml
    readOnly: true
  - name: state
    mountPath: /var/lib/hxp
  - name: tmp
    mountPath: /tmp
{{- if and $root.Values.secrets.name $root.Values.secrets.apiKeys }}
  - name: secrets
    mountPath: /etc/hxp/secrets
    readOnly: true
{{- end }}
{{- with .extraMounts }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The pod volumes the container above mounts: (dict "root" $ "config" CONFIGMAP). */}}
{{- define "hxp.volumes" -}}
- name: config
  configMap:
    name: {{ .config }}
- name: state
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- $s := .root.Values.secrets }}
{{- if and $s.name $s.apiKeys }}
- name: secrets
  secret:
    secretName: {{ $s.name }}
    defaultMode: 0440
    items:
      - key: {{ $s.apiKeys }}
        path: api-keys
{{- end }}
{{- end -}}

{{/* The pod-level security context of every HXP pod. */}}
{{- define "hxp.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}
