"""Everything that lists the services agrees with shop_chassis.registry, so adding a service is
a folder under services/ plus one registry entry (then `make deploy-files`)."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from shop_chassis import registry
from shop_chassis.kafka import INVENTORY_TOPIC, ORDERS_TOPIC
from shop_devstack import deploy_files
from shop_devstack.stack import SERVICES, Ports

from .conftest import CHART, COMPOSE_DIR, ROOT, versions


def test_every_service_folder_has_a_registry_entry_and_every_entry_a_folder() -> None:
    folders = {p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists()}
    assert folders == set(registry.names())


def test_every_registry_entry_names_the_api_its_proto_declares() -> None:
    for service in registry.SERVICES:
        module = importlib.import_module(f"shop.{service.name}.v1.{service.name}_pb2")
        declared = {s.full_name for s in module.DESCRIPTOR.services_by_name.values()}
        assert service.api in declared, f"{service.name}: {service.api} not in {declared}"


def test_the_generated_blocks_of_deploy_are_what_the_registry_gives() -> None:
    assert deploy_files.stale(ROOT) == [], "run `make deploy-files`"


def test_a_stale_generated_block_is_noticed(tmp_path: Path) -> None:
    for relative in deploy_files.RENDERS:
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            (ROOT / relative).read_text().replace("50052", "50099").replace("9102", "9199")
        )
    assert set(deploy_files.stale(tmp_path)) == {
        deploy_files.COMPOSE,
        deploy_files.COMPOSE_TARGETS,
        deploy_files.HELM_VALUES,
    }


def test_make_run_and_the_bench_take_services_and_ports_from_the_registry() -> None:
    ports = Ports()
    assert ports.grpc == registry.DEFAULT_GRPC_PORTS
    assert ports.metrics == registry.DEFAULT_METRICS_PORTS
    assert tuple(s.name for s in registry.start_order()) == SERVICES


def test_compose_runs_each_service_from_the_one_image_on_its_registry_ports(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for service in registry.SERVICES:
        entry = services[service.name]
        assert entry["image"] == "shop:dev"
        assert Path(entry["build"]["context"]) == ROOT
        assert entry["environment"]["SHOP_SERVICE"] == service.name
        published = {(p["host_ip"], int(p["published"]), p["target"]) for p in entry["ports"]}
        assert published == {
            ("127.0.0.1", service.grpc_port, service.grpc_port),
            ("127.0.0.1", service.metrics_port, service.metrics_port),
        }
        assert entry["healthcheck"]["test"] == ["CMD", "shop-probe", service.name]
        for callee in service.calls:
            assert entry["depends_on"][callee]["condition"] == "service_healthy"
            port = registry.service(callee).grpc_port
            assert entry["environment"][f"{callee.upper()}_ADDRESS"] == f"dns:///{callee}:{port}"


def test_compose_publishes_every_port_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, entry in compose["services"].items():
        for port in entry.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", name


def test_compose_waits_for_health_and_every_service_has_a_health_check(
    compose: dict[str, Any],
) -> None:
    for name, entry in compose["services"].items():
        assert entry["healthcheck"]["test"][0] == "CMD", name
        for dependency in entry.get("depends_on", {}).values():
            assert dependency["condition"] == "service_healthy", name


def test_compose_pins_every_image_to_the_versions_this_repository_runs(
    compose: dict[str, Any],
) -> None:
    pins = versions()
    images = {name: entry["image"] for name, entry in compose["services"].items()}
    assert images["kafka"] == f"apache/kafka:{pins['KAFKA_VERSION']}"
    assert images["jaeger"] == f"jaegertracing/jaeger:{pins['JAEGER_V2_VERSION'].lstrip('v')}"
    assert images["prometheus"] == f"prom/prometheus:v{pins['PROMETHEUS_VERSION']}"
    for name, image in images.items():
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: {image} is not pinned"
        assert not image.endswith(":latest"), name


def test_compose_mounts_only_files_that_exist(compose: dict[str, Any]) -> None:
    for name, entry in compose["services"].items():
        for volume in entry.get("volumes", []):
            assert volume["type"] == "bind", name
            assert Path(volume["source"]).exists(), f"{name}: {volume['source']}"


def test_compose_prometheus_scrapes_every_service_as_make_runs_prometheus_does() -> None:
    targets = yaml.safe_load((COMPOSE_DIR / "prometheus-targets" / "shop.json").read_text())
    assert {t["labels"]["service"]: t["targets"] for t in targets} == {
        s.name: [f"{s.name}:{s.metrics_port}"] for s in registry.SERVICES
    }
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "shop"
    assert job["file_sd_configs"][0]["files"] == ["targets/*.json"]


def test_the_chart_declares_the_topics_the_services_use_and_the_pinned_kafka() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["kafka"]["topics"] == [ORDERS_TOPIC, INVENTORY_TOPIC]
    assert values["kafka"]["strimzi"]["version"] == versions()["KAFKA_VERSION"]


def test_the_image_uses_the_pinned_uv_and_the_chassis_commands() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG UV_VERSION={versions()['UV_VERSION']}\n" in dockerfile
    chassis = tomllib.loads((ROOT / "libs" / "chassis" / "pyproject.toml").read_text())
    scripts = chassis["project"]["scripts"]
    assert 'ENTRYPOINT ["shop-service"]' in dockerfile and "shop-service" in scripts
    assert 'CMD ["shop-probe"]' in dockerfile and "shop-probe" in scripts
    assert re.search(r"^USER 10001:10001$", dockerfile, re.MULTILINE)
