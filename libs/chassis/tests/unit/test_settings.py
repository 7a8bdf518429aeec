from datetime import timedelta
from pathlib import Path

import pytest
from shop_chassis.settings import ServiceSettings, SettingsError


def test_defaults_listen_on_loopback_with_the_documented_ports() -> None:
    settings = ServiceSettings.from_env("orders", environ={})
    assert settings.grpc_address == "127.0.0.1:50051"
    assert settings.metrics_port == 9101
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.topic_partitions == 3
    assert settings.kafka_consumer_group == "shop-orders"


def test_each_service_reads_its_own_port_variables() -> None:
    environ = {"INVENTORY_GRPC_PORT": "6000", "ORDERS_GRPC_PORT": "7000"}
    assert ServiceSettings.from_env("inventory", environ).grpc_port == 6000
    assert ServiceSettings.from_env("notifier", environ).grpc_port == 50053


def test_dedupe_records_outlive_kafkas_redelivery_window_by_default() -> None:
    retention = ServiceSettings.from_env("inventory", environ={}).retention
    # A record written up to log.roll.hours (168) + log.retention.hours (24) ago can still be
    # delivered again (README, "Bounded data").
    assert retention.processed_events > timedelta(hours=168 + 24)
    assert retention.sent_outbox_rows == timedelta(days=7)
    assert retention.prune_interval_seconds == 300


def test_retention_is_read_from_its_variables() -> None:
    environ = {
        "OUTBOX_RETENTION_SECONDS": "3600",
        "PROCESSED_EVENTS_RETENTION_SECONDS": "864000",
        "PRUNE_INTERVAL_SECONDS": "60",
    }
    retention = ServiceSettings.from_env("orders", environ).retention
    assert retention.sent_outbox_rows == timedelta(hours=1)
    assert retention.processed_events == timedelta(days=10)
    assert retention.prune_interval_seconds == 60


def test_each_service_reads_its_own_consumer_group_so_one_shell_setting_cannot_merge_them() -> None:
    environ = {"INVENTORY_KAFKA_CONSUMER_GROUP": "inventory-blue"}
    assert ServiceSettings.from_env("inventory", environ).kafka_consumer_group == "inventory-blue"
    assert ServiceSettings.from_env("notifier", environ).kafka_consumer_group == "shop-notifier"


def test_the_unprefixed_consumer_group_variable_is_refused_naming_its_replacement() -> None:
    with pytest.raises(SettingsError, match="set NOTIFIER_KAFKA_CONSUMER_GROUP"):
        ServiceSettings.from_env("notifier", {"KAFKA_CONSUMER_GROUP": "shop"})


def test_services_run_on_uvloop_unless_the_stdlib_loop_is_asked_for() -> None:
    assert ServiceSettings.from_env("orders", {}).event_loop == "uvloop"
    assert ServiceSettings.from_env("orders", {"SHOP_EVENT_LOOP": "AsyncIO"}).event_loop == (
        "asyncio"
    )


def test_data_dir_is_the_services_own_folder_under_var() -> None:
    settings = ServiceSettings.from_env("notifier", {"SHOP_VAR_DIR": "/srv/shop"})
    assert settings.data_dir == Path("/srv/shop/notifier")


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"ORDERS_GRPC_PORT": "http"}, "ORDERS_GRPC_PORT"),
        ({"ORDERS_METRICS_PORT": "70000"}, "ORDERS_METRICS_PORT"),
        ({"KAFKA_TOPIC_PARTITIONS": "0"}, "KAFKA_TOPIC_PARTITIONS"),
        ({"KAFKA_BOOTSTRAP_SERVERS": " "}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"SHUTDOWN_GRACE_SECONDS": "soon"}, "SHUTDOWN_GRACE_SECONDS"),
        ({"OUTBOX_RETENTION_SECONDS": "7d"}, "OUTBOX_RETENTION_SECONDS"),
        ({"PROCESSED_EVENTS_RETENTION_SECONDS": "0"}, "PROCESSED_EVENTS_RETENTION_SECONDS"),
        ({"PRUNE_INTERVAL_SECONDS": "-5"}, "PRUNE_INTERVAL_SECONDS"),
        ({"SHOP_TLS": "maybe"}, "SHOP_TLS"),
        ({"SHOP_EVENT_LOOP": "tokio"}, "SHOP_EVENT_LOOP"),
    ],
)
def test_a_malformed_variable_fails_fast_and_is_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        ServiceSettings.from_env("orders", environ)
