"""`make deploy-files`: the parts of deploy/ that list the services, written from the registry.

Compose's service entries, the Helm chart's `services` values and the Prometheus targets of
the Compose stack come from `shop_chassis.registry`. Each sits in a marked block of a file that
is otherwise written by hand; `--check` (run by `make deploy-check` and the agreement test)
fails when a block is not what the registry gives.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from shop_chassis import registry
from shop_chassis.registry import Service

BEGIN = "# --- generated from shop_chassis.registry by `make deploy-files`: edit the registry ---"
END = "# --- end of generated block ---"

COMPOSE = Path("deploy/compose/compose.yaml")
COMPOSE_TARGETS = Path("deploy/compose/prometheus-targets/shop.json")
HELM_VALUES = Path("deploy/helm/shop/values.yaml")


def address_variable(callee: str) -> str:
    """The variable a caller reads a callee's gRPC target from (orders: INVENTORY_ADDRESS)."""
    return f"{registry.service(callee).env_prefix}_ADDRESS"


def compose_service(service: Service) -> str:
    prefix = service.env_prefix
    lines = [
        f"  {service.name}:",
        "    <<: *shop-service",
        "    environment:",
        "      <<: *shop-environment",
        f"      SHOP_SERVICE: {service.name}",
        f'      {prefix}_GRPC_PORT: "{service.grpc_port}"',
        f'      {prefix}_METRICS_PORT: "{service.metrics_port}"',
    ]
    for callee in service.calls:
        # dns:/// resolves every address of the name; the client balances round_robin.
        target = f"dns:///{callee}:{registry.service(callee).grpc_port}"
        lines.append(f"      {address_variable(callee)}: {target}")
    lines += [
        "    ports:",
        f'      - "127.0.0.1:{service.grpc_port}:{service.grpc_port}"',
        f'      - "127.0.0.1:{service.metrics_port}:{service.metrics_port}"',
        "    healthcheck:",
        "      <<: *shop-healthcheck",
        f'      test: ["CMD", "shop-probe", "{service.name}"]',
        "    depends_on:",
        "      <<: *shop-depends-on",
    ]
    for callee in service.calls:
        lines += [f"      {callee}:", "        condition: service_healthy"]
    return "\n".join(lines)


def compose_block() -> str:
    return "\n".join(compose_service(s) for s in registry.start_order())


def helm_block() -> str:
    lines = ["services:"]
    for service in registry.SERVICES:
        calls = ", ".join(service.calls)
        lines += [
            f"  {service.name}:",
            f"    grpcPort: {service.grpc_port}",
            f"    metricsPort: {service.metrics_port}",
            f"    api: {service.api}",
            f"    calls: [{calls}]",
            f"    consumesEvents: {'true' if service.consumes_events else 'false'}",
        ]
    return "\n".join(lines)


def prometheus_targets() -> str:
    """The Compose stack's scrape targets, in the file_sd format make run's Prometheus reads."""
    targets = [
        {
            "targets": [f"{s.name}:{s.metrics_port}"],
            "labels": {"service": s.name, "replica": s.name},
        }
        for s in registry.SERVICES
    ]
    return json.dumps(targets, indent=2) + "\n"


def with_block(text: str, block: str, path: Path) -> str:
    """`text` with the lines between BEGIN and END replaced by `block`."""
    lines = text.splitlines()
    try:
        start, end = lines.index(BEGIN), lines.index(END)
    except ValueError:
        raise SystemExit(f"{path}: the generated block's markers are missing") from None
    return "\n".join([*lines[: start + 1], block, *lines[end:]]) + "\n"


Render = Callable[[str], str]

RENDERS: dict[Path, Render] = {
    COMPOSE: lambda text: with_block(text, compose_block(), COMPOSE),
    HELM_VALUES: lambda text: with_block(text, helm_block(), HELM_VALUES),
    COMPOSE_TARGETS: lambda _: prometheus_targets(),
}


def stale(root: Path) -> list[Path]:
    """The generated files that differ from what the registry gives now."""
    out = []
    for relative, render in RENDERS.items():
        path = root / relative
        current = path.read_text() if path.exists() else ""
        if render(current) != current:
            out.append(relative)
    return out


def write(root: Path) -> list[Path]:
    changed = stale(root)
    for relative in changed:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(RENDERS[relative](path.read_text() if path.exists() else ""))
    return changed


def main(argv: list[str] | None = None) -> int:
    from shop_devstack.stack import repo_root

    parser = argparse.ArgumentParser(prog="deploy-files", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    root = repo_root()
    if args.check:
        out_of_date = stale(root)
        for path in out_of_date:
            print(f"{path} is out of date with shop_chassis.registry: run `make deploy-files`")
        return 1 if out_of_date else 0
    for path in write(root):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
