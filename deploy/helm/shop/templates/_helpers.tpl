{{/* Names: <release>-<service>, cut to 63 characters (a DNS label). */}}
{{- define "shop.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "shop.serviceName" -}}
{{- printf "%s-%s" (include "shop.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "shop.headlessName" -}}
{{- printf "%s-%s-headless" (include "shop.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Common labels; resources of one service add shop.selectorLabels. */}}
{{- define "shop.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/part-of: shop
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "shop.selectorLabels" -}}
app.kubernetes.io/name: shop
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* One service's settings: serviceDefaults with its own entry laid over them. */}}
{{- define "shop.service" -}}
{{- $spec := index .root.Values.services .name -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.serviceDefaults) (deepCopy $spec)) -}}
{{- end -}}

{{- define "shop.kafkaClusterName" -}}
{{- .Values.kafka.strimzi.clusterName | default (printf "%s-kafka" .Release.Name) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "shop.kafkaBootstrap" -}}
{{- if .Values.kafka.strimzi.enabled -}}
{{- printf "%s-kafka-bootstrap.%s.svc.%s:9092" (include "shop.kafkaClusterName" .) .Release.Namespace .Values.clusterDomain -}}
{{- else -}}
{{- required "set kafka.bootstrapServers to an existing Kafka cluster, or kafka.strimzi.enabled=true" .Values.kafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{- define "shop.databaseSecret" -}}
{{- if .Values.database.urls -}}
{{- printf "%s-database" (include "shop.fullname" .) -}}
{{- else -}}
{{- required "set database.existingSecret (a Secret with <SERVICE>_DATABASE_URL keys) or database.urls" .Values.database.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* A ServiceMonitor when asked for and the Prometheus Operator's API is served. */}}
{{- define "shop.serviceMonitor" -}}
{{- if and .Values.metrics.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") -}}
true
{{- end -}}
{{- end -}}
