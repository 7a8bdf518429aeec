"""The container image's two commands, for any service in the registry.

`shop-service [name]` runs a service (`python -m <name>`); `shop-probe [name]` is the image's
health check: exit 0 when that service answers SERVING to a gRPC health check on its port
(`<NAME>_GRPC_PORT`, else the registry's), 1 otherwise. The service is the argument, else
SHOP_SERVICE, which the image's health check reads too: set SHOP_SERVICE in a container.
Kubernetes needs no probe command: it asks the gRPC health service itself.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Sequence
from typing import Any

from shop_chassis import registry
from shop_chassis.settings import ServiceSettings, SettingsError

PROBE_TIMEOUT_SECONDS = 3.0


def _chosen(argv: Sequence[str]) -> str:
    name = argv[0] if argv else os.environ.get("SHOP_SERVICE", "")
    if name not in registry.names():
        raise SystemExit(
            f"which service? Pass its name or set SHOP_SERVICE to one of"
            f" {', '.join(registry.names())} (got {name!r})"
        )
    return name


def run(argv: Sequence[str] | None = None) -> None:
    name = _chosen(sys.argv[1:] if argv is None else argv)
    os.environ["SHOP_SERVICE"] = name
    runpy.run_module(name, run_name="__main__", alter_sys=True)


def probe(argv: Sequence[str] | None = None) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    name = _chosen(sys.argv[1:] if argv is None else argv)
    try:
        port = ServiceSettings.from_env(name).grpc_port
    except SettingsError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        return 1
    address = f"127.0.0.1:{port}"
    with grpc.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs package omits its methods
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            print(f"{name} at {address}: {exc.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if status != "SERVING":
        print(f"{name} at {address}: {status}", file=sys.stderr)
        return 1
    return 0
