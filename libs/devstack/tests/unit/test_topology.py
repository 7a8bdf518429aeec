"""The cluster differs from `make run` by configuration only: ports, addresses, variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from shop_devstack.stack import CLUSTER, SINGLE, Ports, Stack


def stack(topology: object, ports: Ports | None = None) -> Stack:
    return Stack(Path("/tmp/var"), ports or Ports(), root=Path("/repo"), topology=topology)  # type: ignore[arg-type]


def test_the_cluster_places_brokers_and_replicas_next_to_the_first_ones_ports() -> None:
    ports = Ports()
    assert [ports.broker(n) for n in (1, 2, 3)] == [(9092, 9093), (9094, 9095), (9096, 9097)]
    assert ports.replica("orders", 2) == (50061, 9111)
    assert ports.replica("inventory", 1) == (50052, 9102)


def test_a_test_stack_gets_free_ports_for_extra_brokers_and_replicas_too() -> None:
    ports = Ports.free()
    extra = [*ports.broker(2), *ports.broker(3), *ports.replica("notifier", 2)]
    assert len(set(extra)) == len(extra)
    assert not set(extra) & {9094, 9095, 9096, 9097, 50063, 9113}
    assert ports.broker(2) == ports.broker(2)  # chosen once


def test_one_node_stack_reaches_one_inventory_and_one_broker() -> None:
    single = stack(SINGLE)
    env = single.service_env("orders")
    assert env["INVENTORY_ADDRESS"] == "127.0.0.1:50052"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    assert "ORDERS_DATABASE_URL" not in env  # SQLite, in the service's own folder
    assert "KAFKA_REPLICATION_FACTOR" not in env


def test_services_run_without_docstrings_and_asserts_unless_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PYTHONOPTIMIZE", raising=False)
    assert stack(SINGLE).service_env("orders")["PYTHONOPTIMIZE"] == "2"
    monkeypatch.setenv("PYTHONOPTIMIZE", "0")
    assert stack(CLUSTER).service_env("notifier", replica=2)["PYTHONOPTIMIZE"] == "0"


def test_cluster_replicas_share_a_postgres_database_and_balance_over_every_inventory() -> None:
    cluster = stack(CLUSTER)
    env = cluster.service_env("orders", replica=2)
    assert env["INVENTORY_ADDRESS"] == "ipv4:127.0.0.1:50052,127.0.0.1:50062"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert env["KAFKA_REPLICATION_FACTOR"] == "3"
    assert env["ORDERS_DATABASE_URL"] == "postgresql+asyncpg://postgres@127.0.0.1:55432/orders"
    assert env["ORDERS_GRPC_PORT"] == "50061"
    assert env["SHOP_VAR_DIR"] != cluster.service_env("orders", replica=1)["SHOP_VAR_DIR"]


def test_cluster_starts_each_replica_by_name_with_the_same_code() -> None:
    specs = stack(CLUSTER).services()
    assert [s.name for s in specs] == [
        "inventory-1",
        "inventory-2",
        "orders-1",
        "orders-2",
        "notifier-1",
        "notifier-2",
    ]
    assert {tuple(s.argv[1:]) for s in specs if s.name.startswith("orders")} == {("-m", "orders")}


def test_three_brokers_keep_every_record_on_three_and_acknowledge_with_two() -> None:
    assert (CLUSTER.replication, CLUSTER.min_insync_replicas) == (3, 2)
    assert (SINGLE.replication, SINGLE.min_insync_replicas) == (1, 1)
