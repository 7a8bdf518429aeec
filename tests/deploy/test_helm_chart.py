"""What the Helm chart renders, read as a cluster would get it (`helm template`)."""

from __future__ import annotations

from typing import Any

import pytest
from shop_chassis import registry

from .conftest import CHART, Manifests, Render, of_kind, run, tool

PRODUCTION = ("-f", str(CHART / "values-production.yaml"))
SERVICE_MONITOR_API = ("--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment)["env"]}


@pytest.fixture(scope="module")
def default(render: Render) -> Manifests:
    return render()


def test_each_registry_service_gets_a_deployment_service_pdb_and_autoscaler(
    default: Manifests,
) -> None:
    for kind in ("Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        assert set(of_kind(default, kind)) == {f"shop-{name}" for name in registry.names()}
    assert {f"shop-{name}" for name in registry.names()} <= set(of_kind(default, "Service"))


def test_orders_reaches_every_inventory_pod_through_a_headless_service_and_dns(
    default: Manifests,
) -> None:
    services = of_kind(default, "Service")
    headless = services["shop-inventory-headless"]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"]["app.kubernetes.io/component"] == "inventory"
    address = env(of_kind(default, "Deployment")["shop-orders"])["INVENTORY_ADDRESS"]
    assert address == "dns:///shop-inventory-headless.shop.svc.cluster.local:50052"


def test_only_a_service_someone_calls_gets_a_headless_service(default: Manifests) -> None:
    called = {callee for s in registry.SERVICES for callee in s.calls}
    headless = {
        name.removeprefix("shop-").removesuffix("-headless")
        for name, svc in of_kind(default, "Service").items()
        if svc["spec"].get("clusterIP") == "None"
    }
    assert headless == called


def test_the_orders_client_balances_per_call_with_round_robin() -> None:
    from orders.adapters.inventory_client import SERVICE_CONFIG

    assert '"round_robin"' in SERVICE_CONFIG


def test_probes_are_native_grpc_and_readiness_asks_for_the_services_api(
    default: Manifests,
) -> None:
    for name, deployment in of_kind(default, "Deployment").items():
        service = registry.service(name.removeprefix("shop-"))
        c = container(deployment)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert c[probe]["grpc"]["port"] == service.grpc_port, (name, probe)
        assert c["readinessProbe"]["grpc"]["service"] == service.api
        assert "service" not in c["livenessProbe"]["grpc"]


def test_every_container_runs_as_non_root_read_only_without_capabilities(
    default: Manifests,
) -> None:
    for name, deployment in of_kind(default, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["automountServiceAccountToken"] is False
        security = container(deployment)["securityContext"]
        assert security == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        mounts = {m["mountPath"] for m in container(deployment)["volumeMounts"]}
        assert mounts == {"/var/lib/shop", "/tmp"}, "the only writable places"


def test_every_service_gets_its_database_url_from_the_secret(default: Manifests) -> None:
    for name, deployment in of_kind(default, "Deployment").items():
        prefix = name.removeprefix("shop-").upper()
        ref = env(deployment)[f"{prefix}_DATABASE_URL"]["secretKeyRef"]
        assert ref == {"name": "shop-database", "key": f"{prefix}_DATABASE_URL"}


def test_database_urls_in_values_become_a_secret_the_pods_roll_on(render: Render) -> None:
    manifests = render("--set", "database.urls.orders=postgresql+asyncpg://u:p@db/orders")
    (secret,) = of_kind(manifests, "Secret").values()
    assert secret["stringData"] == {"ORDERS_DATABASE_URL": "postgresql+asyncpg://u:p@db/orders"}
    orders = of_kind(manifests, "Deployment")["shop-orders"]
    assert "checksum/database" in orders["spec"]["template"]["metadata"]["annotations"]


def test_strimzi_gets_a_kraft_pool_of_three_and_topics_replicated_three_times(
    default: Manifests,
) -> None:
    (pool,) = of_kind(default, "KafkaNodePool").values()
    assert pool["spec"]["replicas"] == 3
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    (kafka,) = of_kind(default, "Kafka").values()
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 2
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(default, "KafkaTopic").values()}
    assert set(topics) == {
        "shop.orders.v1",
        "shop.orders.v1.dlq",
        "shop.inventory.v1",
        "shop.inventory.v1.dlq",
    }
    for spec in topics.values():
        assert (spec["replicas"], spec["config"]["min.insync.replicas"]) == (3, 2)
    orders = env(of_kind(default, "Deployment")["shop-orders"])
    assert (
        orders["KAFKA_BOOTSTRAP_SERVERS"]
        == "shop-kafka-kafka-bootstrap.shop.svc.cluster.local:9092"
    )
    assert orders["KAFKA_REPLICATION_FACTOR"] == "3"


def test_an_existing_kafka_replaces_the_strimzi_resources(render: Render) -> None:
    manifests = render(
        "--set",
        "kafka.strimzi.enabled=false",
        "--set-string",
        r"kafka.bootstrapServers=k1:9092\,k2:9092",
    )
    assert not {"Kafka", "KafkaNodePool", "KafkaTopic"} & {m["kind"] for m in manifests}
    for deployment in of_kind(manifests, "Deployment").values():
        assert env(deployment)["KAFKA_BOOTSTRAP_SERVERS"] == "k1:9092,k2:9092"


def test_without_any_kafka_the_chart_refuses_naming_the_value_to_set() -> None:
    result = run(
        [tool("helm"), "template", "shop", str(CHART), "--set", "kafka.strimzi.enabled=false"]
    )
    assert result.returncode != 0
    assert "kafka.bootstrapServers" in result.stderr


def test_a_min_insync_as_large_as_the_replication_is_refused() -> None:
    result = run(
        [tool("helm"), "template", "shop", str(CHART), "--set", "kafka.minInsyncReplicas=3"]
    )
    assert result.returncode != 0
    assert "minInsyncReplicas must be below" in result.stderr


def test_a_service_monitor_only_where_the_operator_api_exists_annotations_otherwise(
    default: Manifests, render: Render
) -> None:
    assert not of_kind(default, "ServiceMonitor")
    for deployment in of_kind(default, "Deployment").values():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(
            container(deployment)["ports"][1]["containerPort"]
        )
    with_operator = render(*SERVICE_MONITOR_API)
    (monitor,) = of_kind(with_operator, "ServiceMonitor").values()
    relabel = {r["targetLabel"]: r for r in monitor["spec"]["endpoints"][0]["relabelings"]}
    assert relabel["job"]["replacement"] == "shop", "the rules and dashboard select job=shop"
    assert relabel["service"]["sourceLabels"] == [
        "__meta_kubernetes_service_label_app_kubernetes_io_component"
    ]
    for deployment in of_kind(with_operator, "Deployment").values():
        assert "prometheus.io/scrape" not in deployment["spec"]["template"]["metadata"].get(
            "annotations", {}
        )


def test_a_consumer_never_scales_past_the_partitions_of_its_topics(render: Render) -> None:
    manifests = render("--set", "serviceDefaults.autoscaling.maxReplicas=10")
    autoscalers = of_kind(manifests, "HorizontalPodAutoscaler")
    for service in registry.SERVICES:
        expected = 3 if service.consumes_events else 10
        assert autoscalers[f"shop-{service.name}"]["spec"]["maxReplicas"] == expected


def test_autoscaled_deployments_leave_the_replica_count_to_the_autoscaler(
    default: Manifests, render: Render
) -> None:
    assert all("replicas" not in d["spec"] for d in of_kind(default, "Deployment").values())
    fixed = render("--set", "serviceDefaults.autoscaling.enabled=false")
    assert not of_kind(fixed, "HorizontalPodAutoscaler")
    assert {d["spec"]["replicas"] for d in of_kind(fixed, "Deployment").values()} == {2}


def test_production_values_override_one_service_and_keep_the_registry_facts(
    render: Render,
) -> None:
    manifests = render(*PRODUCTION, *SERVICE_MONITOR_API)
    deployments = of_kind(manifests, "Deployment")
    orders = container(deployments["shop-orders"])
    assert orders["resources"]["requests"]["cpu"] == "500m"
    assert orders["image"] == "registry.example.com/shop/shop:0.1.0"
    assert container(deployments["shop-inventory"])["resources"]["requests"]["cpu"] == "250m"
    assert env(deployments["shop-orders"])["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4317")
    (pool,) = of_kind(manifests, "KafkaNodePool").values()
    assert pool["spec"]["storage"]["volumes"][0]["class"] == "fast-ssd"
