"""The anchors: bare health servers the bench measures beside the services in every run.

`python -m loadtest.anchor --port N` is the grpc.aio anchor: Health/Check on one event loop,
no interceptors, no reflection. It runs on the event loop the services run on
(SHOP_EVENT_LOOP, uvloop unless set; `use_event_loop` is the chassis's own switch), so a
ratio measures the services' code, not a change of loop. The Go anchor
(.tools/bin/health-anchor, grpc-go with GOMAXPROCS=1) is the ceiling of the box.
Both bind 127.0.0.1 on a free port.

When the bench runs with SHOP_TLS=1 the anchors serve mutual TLS too, so a ratio compares
like with like: with a CA and certificates of their own in the run folder (`anchor-certs/`,
the same kind of keys as `make certs` makes), never the stack's CA key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from shop_chassis.service import use_event_loop
from shop_chassis.settings import EVENT_LOOPS
from shop_chassis.tls import TlsFiles, files_in
from shop_devstack.certs import ensure_certs
from shop_devstack.procs import free_port
from shop_devstack.stack import grpc_serving

from loadtest.ghz import HOST

START_TIMEOUT_S = 20.0
ANCHOR = "anchor"  # the name in the anchors' certificate


class AnchorError(Exception):
    pass


@dataclass(frozen=True)
class Anchor:
    name: str  # "python" or "go"
    address: str
    tls: TlsFiles | None = None  # what a client shows it (None: plaintext)


async def serve(port: int, tls: TlsFiles | None) -> None:
    server = grpc.aio.server()
    health = health_aio.HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if tls is None:
        server.add_insecure_port(f"{HOST}:{port}")
    else:
        server.add_secure_port(f"{HOST}:{port}", tls.server_credentials())
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1)


async def _start(
    processes: list[asyncio.subprocess.Process],
    name: str,
    argv: list[str],
    env: dict[str, str],
    address: str,
    tls: TlsFiles | None,
) -> Anchor:
    process = await asyncio.create_subprocess_exec(
        *argv, env={**os.environ, **env}, stdout=asyncio.subprocess.DEVNULL
    )
    processes.append(process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise AnchorError(f"the {name} anchor exited with {process.returncode}")
        with contextlib.suppress(grpc.aio.AioRpcError, OSError):
            if await grpc_serving(address, tls):
                return Anchor(name, address, tls)
        await asyncio.sleep(0.2)
    raise AnchorError(f"the {name} anchor did not serve on {address} in {START_TIMEOUT_S:g}s")


@contextlib.asynccontextmanager
async def anchors(
    go_binary: Path | None, tls_dir: Path | None, loop: str | None = None
) -> AsyncIterator[list[Anchor]]:
    """Starts the Python anchor on `loop` (default: the services' loop) and the Go one unless
    `go_binary` is None, over mutual TLS with certificates made in `tls_dir` when it is given;
    stops them."""
    processes: list[asyncio.subprocess.Process] = []
    server_flags: list[str] = []
    client: TlsFiles | None = None
    if tls_dir is not None:
        ensure_certs(tls_dir, [ANCHOR])
        server = files_in(tls_dir, ANCHOR)
        client = files_in(tls_dir, "client")
        server_flags = [f"-cert={server.cert}", f"-key={server.key}", f"-ca={server.ca}"]
    try:
        port = free_port()
        started = [
            await _start(
                processes,
                "python",
                [
                    sys.executable,
                    "-m",
                    "loadtest.anchor",
                    "--port",
                    str(port),
                    f"--loop={loop or anchor_loop()}",
                    *server_flags,
                ],
                {},
                f"{HOST}:{port}",
                client,
            )
        ]
        if go_binary is not None:
            port = free_port()
            started.append(
                await _start(
                    processes,
                    "go",
                    [str(go_binary), "-address", f"{HOST}:{port}", *server_flags],
                    {"GOMAXPROCS": "1"},
                    f"{HOST}:{port}",
                    client,
                )
            )
        yield started
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 5)
                except TimeoutError:
                    process.kill()
                    await process.wait()


def anchor_loop() -> str:
    """The services' event loop, which the Python anchor runs on too."""
    name = os.environ.get("SHOP_EVENT_LOOP", "uvloop").strip().lower()
    return name if name in EVENT_LOOPS else "uvloop"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.anchor", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--loop",
        choices=sorted(EVENT_LOOPS),
        default=anchor_loop(),
        help="the event loop to serve on (default: SHOP_EVENT_LOOP, else uvloop, as the services)",
    )
    parser.add_argument("-cert", type=Path, help="serve mutual TLS with this certificate (PEM)")
    parser.add_argument("-key", type=Path, help="its private key (PEM)")
    parser.add_argument("-ca", type=Path, help="the CA client certificates must be signed by")
    args = parser.parse_args()
    tls = TlsFiles.read(args.ca, args.cert, args.key) if args.cert else None
    use_event_loop(args.loop)
    asyncio.run(serve(args.port, tls))


if __name__ == "__main__":
    main()
