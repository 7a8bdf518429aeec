"""The service registry: one list, and what is derived from it."""

from __future__ import annotations

import pytest
from shop_chassis import registry
from shop_chassis.registry import Service
from shop_chassis.settings import ServiceSettings


def test_a_service_starts_after_the_services_it_calls() -> None:
    order = [s.name for s in registry.start_order()]
    for service in registry.SERVICES:
        for callee in service.calls:
            assert order.index(callee) < order.index(service.name)
    assert sorted(order) == sorted(registry.names())


def test_services_calling_each_other_in_a_cycle_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        registry,
        "SERVICES",
        (Service("a", 1, 2, "x.A", calls=("b",)), Service("b", 3, 4, "x.B", calls=("a",))),
    )
    with pytest.raises(ValueError, match="cycle"):
        registry.start_order()


def test_no_two_services_share_a_port_even_with_a_second_replica() -> None:
    # make run-cluster puts replica 2 on the first's ports + 10.
    ports = [
        port + offset
        for s in registry.SERVICES
        for port in (s.grpc_port, s.metrics_port)
        for offset in (0, 10)
    ]
    assert len(ports) == len(set(ports))


def test_every_service_calls_only_services_the_registry_knows() -> None:
    for service in registry.SERVICES:
        for callee in service.calls:
            assert registry.service(callee).name == callee


def test_the_settings_default_to_the_registry_ports() -> None:
    for service in registry.SERVICES:
        settings = ServiceSettings.from_env(service.name, environ={})
        assert (settings.grpc_port, settings.metrics_port) == (
            service.grpc_port,
            service.metrics_port,
        )


def test_an_unknown_service_is_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="'billing'"):
        registry.service("billing")
