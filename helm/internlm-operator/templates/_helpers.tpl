{{/* Chart name. */}}
{{- define "internlm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart> unless the release name already contains the chart name.
Kept at 52 characters so suffixed cluster-scoped names (-admin, -edit, -view, -crd-reader)
stay within 63. */}}
{{- define "internlm-operator.fullname" -}}
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

{{- define "internlm-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "internlm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "internlm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "internlm-operator.labels" -}}
helm.sh/chart: {{ include "internlm-operator.chart" . }}
{{ include "internlm-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: internlm-operator
{{- end }}

{{- define "internlm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "internlm-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "internlm-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Workload image of one stage: {{ include "internlm-operator.workloadImage" (list . "pretrain") }} */}}
{{- define "internlm-operator.workloadImage" -}}
{{- $root := index . 0 }}
{{- $stage := index . 1 }}
{{- $w := $root.Values.workloads }}
{{- $explicit := index $w.images $stage | default "" }}
{{- if $explicit }}
{{- $explicit }}
{{- else }}
{{- printf "%s/%s:%s" (trimSuffix "/" $w.image.registry) $stage (default $root.Chart.AppVersion $w.image.tag) }}
{{- end }}
{{- end }}

{{/*
The operator's permissions on namespaced resources: exactly what it calls (see docs/helm.md
for the table and the code behind each line). Used in the ClusterRole (all namespaces) or in
one Role per watched namespace.
*/}}
{{- define "internlm-operator.namespacedRules" -}}
# Its own kinds: kopf watches them (event handlers only: it writes no annotations or
# finalizers on them); the reconcilers read upstreams and patch status.
- apiGroups: [internlm.io]
  resources: [trainjobs, finetunes, evalruns, modelserves, agents]
  verbs: [get, list, watch]
- apiGroups: [internlm.io]
  resources: [trainjobs/status, finetunes/status, evalruns/status, modelserves/status, agents/status]
  verbs: [patch]
# Children carry ownerReferences with blockOwnerDeletion, which needs update on finalizers
# where the OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift).
- apiGroups: [internlm.io]
  resources: [trainjobs/finalizers, finetunes/finalizers, evalruns/finalizers, modelserves/finalizers, agents/finalizers]
  verbs: [update]
# Every child is watched (list + watch, selected by app.kubernetes.io/managed-by on the
# server) into the operator's cache, so a pass reads nothing from the API.
# Jobs and Deployments: server-side apply (patch; create when absent), deleted on gang
# restart / cleanup, scaled or suspended by merge patch.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# Services and ConfigMaps: written (server-side apply) and deleted; watched as metadata only
# (the operator's cache keeps their labels and annotations, never a ConfigMap's data).
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [list, watch, create, patch, delete]
# Before creating a Job or Deployment: do the PVCs and ConfigMaps its pods name exist?
# (metadata-only GETs; the status says which one is missing)
- apiGroups: [""]
  resources: [persistentvolumeclaims, configmaps]
  verbs: [get]
{{- if and .Values.workloads.hubCache .Values.workloads.hubCache.storageClass }}
# workloads.hubCache: the namespace's cache PVC is created by the operator (owned by the cache
# ConfigMap, so it outlives the resources that use it).
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [create]
{{- end }}
{{- if .Values.rbac.checkSecrets }}
# rbac.checkSecrets: the same check for Secrets (metadata-only GETs, but RBAC cannot tell a
# metadata read from a read of the data: this lets the operator read Secrets).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch, delete]
# Pods are only watched: termination messages (results), restarts, placement.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# Kueue's reason while a Job is queued: the Job's Workload (403/404 tolerated: Kueue absent).
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [get, list]
# Events for every transition a user wants to see; a pending Job's own Events are listed
# for FailedCreate (a quota, Pod Security or an admission webhook refusing its pods).
- apiGroups: [""]
  resources: [events]
  verbs: [create, list]
{{- end }}

{{/* Cluster-scoped reads kopf needs: it watches CRDs to notice the five kinds appearing. */}}
{{- define "internlm-operator.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- end }}
