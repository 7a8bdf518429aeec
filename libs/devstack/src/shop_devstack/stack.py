"""The processes of the local stack and the order they start in."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shop_devstack.procs import Process, ProcessSpec, StackError, free_port, port_in_use

SERVICES = ("inventory", "orders", "notifier")  # start order: orders calls inventory


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "deploy" / "versions.env").is_file():
            return parent
    raise StackError(f"cannot find the repository root above {here}")


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StackError(f"{name} must be a port number, got {raw!r}")
    return int(raw)


@dataclass
class Ports:
    kafka: int = 9092
    kafka_controller: int = 9093
    jaeger_ui: int = 16686
    jaeger_otlp_grpc: int = 4317
    jaeger_otlp_http: int = 4318
    jaeger_query_grpc: int = 16685
    jaeger_health: int = 13133
    prometheus: int = 9090
    grpc: dict[str, int] = field(
        default_factory=lambda: {"orders": 50051, "inventory": 50052, "notifier": 50053}
    )
    metrics: dict[str, int] = field(
        default_factory=lambda: {"orders": 9101, "inventory": 9102, "notifier": 9103}
    )

    @classmethod
    def free(cls) -> Ports:
        """Ports nobody listens on right now: for test stacks beside `make run`'s."""
        ports = cls()
        for name, value in vars(ports).items():
            if isinstance(value, int):
                setattr(ports, name, free_port())
        for name in SERVICES:
            ports.grpc[name] = free_port()
            ports.metrics[name] = free_port()
        return ports

    @classmethod
    def from_env(cls) -> Ports:
        """The defaults, each overridable by the variable the services read too."""
        ports = cls()
        ports.kafka = _env_port("KAFKA_PORT", ports.kafka)
        ports.kafka_controller = _env_port("KAFKA_CONTROLLER_PORT", ports.kafka_controller)
        ports.jaeger_ui = _env_port("JAEGER_UI_PORT", ports.jaeger_ui)
        ports.jaeger_otlp_grpc = _env_port("JAEGER_OTLP_GRPC_PORT", ports.jaeger_otlp_grpc)
        ports.jaeger_otlp_http = _env_port("JAEGER_OTLP_HTTP_PORT", ports.jaeger_otlp_http)
        ports.jaeger_query_grpc = _env_port("JAEGER_QUERY_GRPC_PORT", ports.jaeger_query_grpc)
        ports.jaeger_health = _env_port("JAEGER_HEALTH_PORT", ports.jaeger_health)
        ports.prometheus = _env_port("PROMETHEUS_PORT", ports.prometheus)
        for name in SERVICES:
            ports.grpc[name] = _env_port(f"{name.upper()}_GRPC_PORT", ports.grpc[name])
            ports.metrics[name] = _env_port(f"{name.upper()}_METRICS_PORT", ports.metrics[name])
        return ports


async def _http_ok(url: str) -> bool:
    def get() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)

    return await asyncio.to_thread(get)


async def grpc_serving(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs package omits its methods
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def kafka_ready(bootstrap: str) -> bool:
    """The broker answers a metadata request (an open port alone is too early)."""
    from aiokafka.admin import AIOKafkaAdminClient

    host, port = bootstrap.rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port))
    writer.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    finally:
        await admin.close()


async def _postgres_ready(port: int) -> bool:
    import asyncpg

    connection = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", timeout=2)
    await connection.close()
    return True


async def _setup_command(what: str, *argv: str) -> None:
    """Run a one-off setup step; if it fails, the error carries its output."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise StackError(f"{what} failed:\n{output.decode(errors='replace')}")


def _kafka_cluster_id() -> str:
    """Kafka's Uuid format: URL-safe base64 of 16 random bytes, not starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class Stack:
    """Builds the process specs for one stack (`make run`'s or a test session's)."""

    def __init__(self, var_dir: Path, ports: Ports, *, root: Path | None = None) -> None:
        self.root = root or repo_root()
        self.var_dir = var_dir
        self.ports = ports
        self.tools = self.root / ".tools"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports.kafka}"

    def _tool(self, name: str) -> str:
        path = self.tools / "bin" / name
        if not path.exists():
            raise StackError(f"{path} is missing: run `deploy/bootstrap.sh` (or `make bootstrap`)")
        return str(path)

    async def kafka(self) -> ProcessSpec:
        libs = self.tools / "kafka-libs"
        if not libs.exists():
            raise StackError(f"{libs} is missing: run `deploy/bootstrap.sh kafka`")
        home = self.var_dir / "kafka"
        (home / "logs").mkdir(parents=True, exist_ok=True)
        template = (self.root / "deploy" / "kafka" / "server.properties").read_text()
        config = home / "server.properties"
        config.write_text(
            template.format(
                port=self.ports.kafka,
                controller_port=self.ports.kafka_controller,
                data_dir=home / "data",
            )
        )
        java = ["java", "-cp", f"{libs}/*"]
        log4j = [
            f"-Dlog4j2.configurationFile={self.root / 'deploy' / 'kafka' / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={home / 'logs'}",
        ]
        id_file = home / "cluster.id"
        if not id_file.exists():
            id_file.write_text(_kafka_cluster_id())
        await _setup_command(
            "formatting Kafka storage",
            *java[:1],
            *log4j,
            *java[1:],
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "--ignore-formatted",
            "-t",
            id_file.read_text().strip(),
            "-c",
            str(config),
        )
        return ProcessSpec(
            name="kafka",
            argv=[
                "java",
                "-Xms256m",
                "-Xmx768m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                *log4j,
                "-cp",
                f"{libs}/*",
                "kafka.Kafka",
                str(config),
            ],
            ready=lambda: kafka_ready(self.kafka_bootstrap),
            ports={"kafka": self.ports.kafka, "kafka controller": self.ports.kafka_controller},
        )

    async def postgres(self, port: int) -> ProcessSpec:
        """A throwaway PostgreSQL server (trust auth, loopback only) for the tests."""
        link = self.tools / "pgbin"
        if not link.exists():
            raise StackError(f"{link} is missing: run `deploy/bootstrap.sh postgres`")
        # PostgreSQL refuses to run as root; run it as the `postgres` user then, from the
        # package's own folder and with its data in one that user owns: a checkout may sit
        # in a folder only its owner can enter (mktemp -d, root's home).
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        bin_dir = link.resolve()
        if as_user:
            digest = hashlib.sha1(str(self.var_dir).encode()).hexdigest()[:12]
            home = Path(tempfile.gettempdir()) / f"shop-postgres-{digest}"
            shutil.rmtree(home, ignore_errors=True)
        else:
            home = self.var_dir / "postgres"
        data = home / "data"
        if not (data / "PG_VERSION").exists():
            home.mkdir(parents=True, exist_ok=True)
            if as_user:
                shutil.chown(home, "postgres")
            await _setup_command(
                "initdb",
                *as_user,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            )
        return ProcessSpec(
            name="postgres",
            argv=[
                *as_user,
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(home),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            ready=lambda: _postgres_ready(port),
            ports={"postgres": port},
            start_timeout=30,
        )

    @property
    def jaeger_ui_assets(self) -> Path | None:
        """The Jaeger web UI's files, if `deploy/bootstrap.sh jaeger-ui` found them."""
        assets = self.tools / "jaeger-ui"
        return assets.resolve() if (assets / "index.html").is_file() else None

    def jaeger(self) -> ProcessSpec:
        p = self.ports
        assets = self.jaeger_ui_assets
        return ProcessSpec(
            name="jaeger",
            argv=[self._tool("jaeger"), "--config", str(self.root / "deploy/jaeger/config.yaml")],
            env={
                # Empty: Jaeger serves its placeholder page instead of the UI.
                "JAEGER_UI_ASSETS_PATH": str(assets) if assets else "",
                "JAEGER_UI_PORT": str(p.jaeger_ui),
                "JAEGER_OTLP_GRPC_PORT": str(p.jaeger_otlp_grpc),
                "JAEGER_OTLP_HTTP_PORT": str(p.jaeger_otlp_http),
                "JAEGER_QUERY_GRPC_PORT": str(p.jaeger_query_grpc),
                "JAEGER_HEALTH_PORT": str(p.jaeger_health),
            },
            ready=lambda: _http_ok(f"http://127.0.0.1:{p.jaeger_ui}/api/services"),
            ports={
                "jaeger ui/api": p.jaeger_ui,
                "jaeger otlp grpc": p.jaeger_otlp_grpc,
                "jaeger otlp http": p.jaeger_otlp_http,
                "jaeger query grpc": p.jaeger_query_grpc,
                "jaeger health": p.jaeger_health,
            },
        )

    def prometheus(self) -> ProcessSpec:
        home = self.var_dir / "prometheus"
        shutil.copytree(self.root / "deploy" / "prometheus", home / "config", dirs_exist_ok=True)
        targets = home / "config" / "targets"
        targets.mkdir(exist_ok=True)
        (targets / "shop.json").write_text(
            json.dumps(
                [
                    {
                        "targets": [f"127.0.0.1:{self.ports.metrics[name]}"],
                        "labels": {"service": name},
                    }
                    for name in SERVICES
                ],
                indent=2,
            )
        )
        return ProcessSpec(
            name="prometheus",
            argv=[
                self._tool("prometheus"),
                f"--config.file={home / 'config' / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.ports.prometheus}",
                "--log.level=warn",
                "--enable-feature=exemplar-storage",
            ],
            ready=lambda: _http_ok(f"http://127.0.0.1:{self.ports.prometheus}/-/ready"),
            ports={"prometheus": self.ports.prometheus},
        )

    def service_env(self, name: str) -> dict[str, str]:
        p = self.ports
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "SHOP_VAR_DIR": str(self.var_dir),
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{p.jaeger_otlp_grpc}",
            "INVENTORY_ADDRESS": f"127.0.0.1:{p.grpc['inventory']}",
            f"{name.upper()}_GRPC_PORT": str(p.grpc[name]),
            f"{name.upper()}_METRICS_PORT": str(p.metrics[name]),
            "PYTHONUNBUFFERED": "1",
        }

    def service(self, name: str, extra_env: dict[str, str] | None = None) -> ProcessSpec:
        address = f"127.0.0.1:{self.ports.grpc[name]}"
        return ProcessSpec(
            name=name,
            argv=[sys.executable, "-m", name],
            env={**self.service_env(name), **(extra_env or {})},
            cwd=self.root,
            ready=lambda: grpc_serving(address),
            ports={
                f"{name} grpc": self.ports.grpc[name],
                f"{name} metrics": self.ports.metrics[name],
            },
            start_timeout=60,
        )


class Supervisor:
    """Starts specs in order, each only after the previous one is ready; stops in reverse."""

    def __init__(self, var_dir: Path, out: TextIO | None) -> None:
        self.var_dir = var_dir
        self.out = out
        self.running: list[Process] = []

    @staticmethod
    def check_ports(specs: Sequence[ProcessSpec]) -> None:
        for spec in specs:
            for role, port in spec.ports.items():
                if port_in_use(port):
                    raise StackError(
                        f"port {port} ({role}) on 127.0.0.1 is already in use: is another"
                        f" `make run` (or a test run) up? Stop it or set another port."
                    )

    async def start(self, spec: ProcessSpec) -> Process:
        process = Process(
            spec, len(self.running), self.out, self.var_dir / "logs" / f"{spec.name}.log"
        )
        self.running.append(process)
        await process.start()
        await process.wait_ready()
        return process

    def first_exited(self) -> Process | None:
        return next((p for p in self.running if p.exited), None)

    async def stop_all(self) -> None:
        """Stop every process, newest first; one that fails to stop does not spare the rest."""
        while self.running:
            process = self.running.pop()
            try:
                await process.stop()
            except Exception as exc:
                print(f"{process.spec.name}: stopping failed: {exc!r}", file=sys.stderr)
