#!/usr/bin/env bash
# `make deploy-check`: everything in deploy/ that a container engine or a cluster would run,
# checked without either (none is on this project's machines):
#   - the registry-generated blocks of deploy/ are current (make deploy-files),
#   - helm lint and helm template of deploy/helm/shop with the default, production-like and
#     existing-Kafka values,
#   - the rendered manifests against Kubernetes' JSON schemas (kubeconform, strict),
#   - deploy/compose/compose.yaml loaded as `docker compose config` loads it (compose-go),
#   - the tests in tests/deploy (what the chart and the Compose file say, and that the
#     validators above do reject broken input).
# Tools: deploy/bootstrap.sh helm kubeconform k8s-schemas compose-config (Makefile does it).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=deploy/versions.env
source deploy/versions.env
bin=.tools/bin
chart=deploy/helm/shop
out=var/deploy-check
rm -rf "$out" && mkdir -p "$out"
step() { printf '\033[1m[deploy-check]\033[0m %s\n' "$*"; }

step "generated blocks agree with shop_chassis.registry"
.venv/bin/python -m shop_devstack.deploy_files --check

step "helm lint (Helm $HELM_VERSION)"
"$bin/helm" lint --strict "$chart"
"$bin/helm" lint --strict "$chart" -f "$chart/values-production.yaml"

step "helm template: default, production-like (Prometheus Operator present), existing Kafka"
render=("$bin/helm" template shop "$chart" --namespace shop --kube-version "$KUBERNETES_SCHEMA_VERSION")
"${render[@]}" >"$out/default.yaml"
"${render[@]}" -f "$chart/values-production.yaml" \
  --api-versions monitoring.coreos.com/v1/ServiceMonitor >"$out/production.yaml"
"${render[@]}" --set kafka.strimzi.enabled=false --set kafka.bootstrapServers=kafka.example:9092 \
  --set telemetry.otlpEndpoint=http://otel-collector:4317 >"$out/existing-kafka.yaml"

step "kubeconform $KUBECONFORM_VERSION: the manifests against Kubernetes $KUBERNETES_SCHEMA_VERSION's schemas"
# Strimzi's Kafka, KafkaNodePool, KafkaTopic and the Prometheus Operator's ServiceMonitor are
# custom resources whose schemas no registry reachable here serves: skipped by name (any other
# kind without a schema fails), and checked by tests/deploy/test_helm_chart.py instead.
"$bin/kubeconform" -strict -summary -kubernetes-version "$KUBERNETES_SCHEMA_VERSION" \
  -schema-location ".tools/kubernetes-json-schema/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
  -skip Kafka,KafkaNodePool,KafkaTopic,ServiceMonitor \
  "$out/default.yaml" "$out/production.yaml" "$out/existing-kafka.yaml"

step "compose-config (compose-go $COMPOSE_GO_VERSION): deploy/compose/compose.yaml"
"$bin/compose-config" deploy/compose/compose.yaml >"$out/compose.json"
echo "deploy/compose/compose.yaml: valid ($(.venv/bin/python -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["services"]))' "$out/compose.json") services)"

step "tests/deploy"
.venv/bin/python -m pytest -q tests/deploy
