"""The services of shop: the one list of what runs, on which ports, and who calls whom.

Everything else that names the services reads this list (the settings' default ports, the
devstack's `make run`, the bench) or is generated from it and checked by a test (the Compose
file, the Helm chart's values, the Compose Prometheus targets: `make deploy-files`). Adding a
service is a folder under services/ plus one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    name: str  # also its Python package, `python -m <name>`, and the variables' prefix
    grpc_port: int
    metrics_port: int
    api: str  # the gRPC service it serves besides health and reflection
    calls: tuple[str, ...] = ()  # services it calls over gRPC, found at <NAME>_ADDRESS
    consumes_events: bool = False  # a Kafka consumer group member: replicas <= partitions

    @property
    def env_prefix(self) -> str:
        return self.name.upper()


SERVICES: tuple[Service, ...] = (
    Service("orders", 50051, 9101, "shop.orders.v1.OrderService", calls=("inventory",)),
    Service("inventory", 50052, 9102, "shop.inventory.v1.InventoryService", consumes_events=True),
    Service("notifier", 50053, 9103, "shop.notifier.v1.NotifierService", consumes_events=True),
)

DEFAULT_GRPC_PORTS = {service.name: service.grpc_port for service in SERVICES}
DEFAULT_METRICS_PORTS = {service.name: service.metrics_port for service in SERVICES}


def service(name: str) -> Service:
    for candidate in SERVICES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no service {name!r} in shop_chassis.registry (known: {names()})")


def names() -> tuple[str, ...]:
    return tuple(s.name for s in SERVICES)


def start_order() -> tuple[Service, ...]:
    """Every service after the ones it calls (inventory before orders)."""
    ordered: list[Service] = []

    def visit(current: Service, path: tuple[str, ...]) -> None:
        if current in ordered:
            return
        if current.name in path:
            raise ValueError(f"services call each other in a cycle: {' -> '.join(path)}")
        for callee in current.calls:
            visit(service(callee), (*path, current.name))
        ordered.append(current)

    for each in SERVICES:
        visit(each, ())
    return tuple(ordered)


def callers_of(name: str) -> tuple[Service, ...]:
    return tuple(s for s in SERVICES if name in s.calls)
