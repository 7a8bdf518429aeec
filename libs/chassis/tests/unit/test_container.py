"""The image's commands: `shop-probe` answers from the gRPC health protocol, `shop-service`
runs only a service the registry knows."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from shop_chassis.container import probe, run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    port = free_port()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield port, servicer
    server.stop(None)


def test_the_probe_passes_when_the_service_answers_serving(
    health_server: tuple[int, health.HealthServicer], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    monkeypatch.setenv("INVENTORY_GRPC_PORT", str(port))
    assert probe(["inventory"]) == 0


def test_the_probe_fails_while_the_service_is_not_serving(
    health_server: tuple[int, health.HealthServicer],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    monkeypatch.setenv("SHOP_SERVICE", "orders")
    monkeypatch.setenv("ORDERS_GRPC_PORT", str(port))
    assert probe([]) == 1
    assert "NOT_SERVING" in capsys.readouterr().err


def test_the_probe_fails_when_nothing_listens_on_the_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFIER_GRPC_PORT", str(free_port()))
    assert probe(["notifier"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


def test_a_container_without_a_known_service_name_says_which_names_exist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SHOP_SERVICE", raising=False)
    with pytest.raises(SystemExit, match="orders, inventory, notifier"):
        run([])
    with pytest.raises(SystemExit, match="'billing'"):
        probe(["billing"])
