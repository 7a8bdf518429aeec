"""`make profile SERVICE=orders`: a py-spy flame graph of a running service under load.

Finds the service's process by its gRPC port on the `make run` stack, puts it under a
bounded ghz load on loopback (CreateOrder for orders, GetStock for inventory,
ListNotifications for notifier; with SHOP_TLS=1 over mutual TLS, showing the client
certificate) and records it with py-spy meanwhile. Writes
`var/profile/<service>-<time>.svg` and prints the frames that hold most samples.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from shop.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from shop_chassis.tls import TlsFiles

from shop_devstack.procs import StackError
from shop_devstack.stack import SERVICES, Ports, client_tls_from_env, repo_root

HOST = "127.0.0.1"
MAX_SECONDS = 120
STOCK_UP = 100_000
ROW = 16.0  # the height of a frame in py-spy's SVG
SKUS = ("MUG-001", "TEE-BLK-M", "SOCKS-3P", "BOOK-DDIA")

# What each service is loaded with: a call and its requests (ghz takes them in turn).
LOADS: dict[str, tuple[str, list[dict[str, object]]]] = {
    "orders": (
        "shop.orders.v1.OrderService/CreateOrder",
        [{"customer_id": "profile", "items": [{"sku": sku, "quantity": 1}]} for sku in SKUS],
    ),
    "inventory": ("shop.inventory.v1.InventoryService/GetStock", [{"sku": sku} for sku in SKUS]),
    "notifier": (
        "shop.notifier.v1.NotifierService/ListNotifications",
        [{"customer_id": "profile", "page_size": 10}],
    ),
}


def listening_pid(port: int) -> int:
    """The pid of the process listening on 127.0.0.1:`port` (read from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    if inodes:
        for fd_dir in Path("/proc").glob("[0-9]*/fd"):
            try:
                for fd in fd_dir.iterdir():
                    target = fd.readlink().as_posix()
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        return int(fd_dir.parent.name)
            except (PermissionError, FileNotFoundError):
                continue
    raise StackError(f"nothing listens on {HOST}:{port}; start the stack with `make run` first")


def top_functions(svg: Path, count: int = 15) -> list[tuple[float, str]]:
    """The functions that spent most samples themselves (not in their callees), from the
    frames py-spy's SVG draws: a frame's own samples are its width minus its children's."""
    frames = [
        (html.unescape(title), int(x), int(w), float(y))
        for title, y, x, w in re.findall(
            r'<title>(.*?)</title><rect [^>]*y="([\d.]+)"[^>]*fg:x="(\d+)" fg:w="(\d+)"',
            svg.read_text(),
        )
    ]
    by_level: dict[float, list[tuple[int, int]]] = {}
    for _, x, w, y in frames:
        by_level.setdefault(y, []).append((x, w))
    total = max((w for _, _, w, _ in frames), default=0)
    own: dict[str, int] = {}
    for title, x, w, y in frames:
        # py-spy draws callers above callees: a frame's callees sit one row below it.
        inside = sum(cw for cx, cw in by_level.get(y + ROW, []) if x <= cx < x + w)
        # "function (file:line) (N samples, P%)" -> "function (file)"
        function = re.sub(r":\d+\)$", ")", title.rsplit(" (", 1)[0])
        own[function] = own.get(function, 0) + w - inside
    if not total:
        return []
    shares = ((100.0 * n / total, name) for name, n in own.items() if n > 0)
    return sorted(shares, reverse=True)[:count]


def ghz_tls_flags(tls: TlsFiles | None) -> list[str]:
    """ghz's flags for plaintext, or for mutual TLS with a client certificate."""
    if tls is None:
        return ["--insecure"]
    return [f"--cacert={tls.ca}", f"--cert={tls.cert}", f"--key={tls.key}"]


def profile(service: str, seconds: int, concurrency: int, root: Path) -> Path:
    ports = Ports.from_env()
    tls = client_tls_from_env()
    pid = listening_pid(ports.grpc[service])
    py_spy = shutil.which("py-spy", path=str(root / ".venv" / "bin")) or shutil.which("py-spy")
    ghz = root / ".tools" / "bin" / "ghz"
    if py_spy is None:
        raise StackError("py-spy is missing; run `make install`")
    if not ghz.exists():
        raise StackError("ghz is missing; run `deploy/bootstrap.sh ghz`")
    out_dir = root / "var" / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    svg = out_dir / f"{service}-{time.strftime('%Y%m%d-%H%M%S')}.svg"
    call, requests = LOADS[service]
    load = [
        str(ghz),
        *ghz_tls_flags(tls),
        f"--call={call}",
        f"--data={json.dumps(requests)}",
        f"--concurrency={concurrency}",
        "--connections=1",
        f"--duration={seconds + 2}s",
        "--duration-stop=wait",  # let calls in flight finish: no errors from cutting them
        "--format=summary",
        f"{HOST}:{ports.grpc[service]}",
    ]
    if service == "orders":
        _stock_up(ports.grpc["inventory"], tls)
    print(f"[profile] {service} (pid {pid}) under {call}, c={concurrency}, {seconds} s", flush=True)
    ghz_run = subprocess.Popen(load, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # let the load reach a steady state before sampling
        subprocess.run(
            [
                py_spy,
                "record",
                f"--pid={pid}",
                f"--duration={seconds}",
                "--rate=200",
                "--nonblocking",  # never pause the service: sampling must not slow what it measures
                "--format=flamegraph",
                f"--output={svg}",
            ],
            check=True,
            capture_output=True,
            timeout=seconds + 30,
        )
        summary, _ = ghz_run.communicate(timeout=seconds + 30)
    finally:
        if ghz_run.poll() is None:
            ghz_run.kill()
            ghz_run.wait()
    print(summary.strip())
    print(f"\n[profile] flame graph: {svg}\n[profile] where the samples were spent:")
    for share, function in top_functions(svg):
        print(f"  {share:5.1f} %  {function}")
    return svg


def _stock_up(inventory_port: int, tls: TlsFiles | None) -> None:
    """Enough stock that the load measures orders placed, not orders refused."""
    target = f"{HOST}:{inventory_port}"
    with (
        grpc.insecure_channel(target)
        if tls is None
        else grpc.secure_channel(target, tls.channel_credentials())
    ) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        for sku in SKUS:
            stub.AdjustStock(
                inventory_pb2.AdjustStockRequest(sku=sku, delta=STOCK_UP, reason="make profile"),
                timeout=10,
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make profile", description=__doc__)
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument("--seconds", type=int, default=15, help=f"1-{MAX_SECONDS}")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be between 1 and {MAX_SECONDS}")
    try:
        profile(args.service, args.seconds, args.concurrency, repo_root())
    except (StackError, subprocess.SubprocessError, grpc.RpcError) as exc:
        print(f"[profile] error: {exc}", file=sys.stderr)
        return 1
    return 0
