"""The processes of the local stack and the order they start in."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from shop_chassis import registry
from shop_chassis.settings import Env, SettingsError
from shop_chassis.tls import (
    TLS_CA,
    TLS_DIR,
    TLS_SWITCH,
    TlsFiles,
    client_tls,
    files_in,
    server_name_option,
    tls_enabled,
)

from shop_devstack.certs import ensure_certs
from shop_devstack.procs import (
    Process,
    ProcessSpec,
    StackError,
    as_is,
    free_port,
    port_in_use,
)

# Start order from the registry: a service after the ones it calls (orders after inventory).
SERVICES = tuple(service.name for service in registry.start_order())


@dataclass(frozen=True)
class Topology:
    """How many of each process run: `make run`'s one of each, or `make run-cluster`'s.

    The services' code is the same in both; only their environment differs.
    """

    name: str
    brokers: int = 1
    replicas: int = 1  # processes per service, sharing one database
    postgres: bool = False  # False: each service on its own SQLite file

    @property
    def replication(self) -> int:
        return min(self.brokers, 3)

    @property
    def min_insync_replicas(self) -> int:
        return 2 if self.replication >= 3 else 1

    def kafka_name(self, node: int) -> str:
        return "kafka" if self.brokers == 1 else f"kafka-{node}"

    def instance_name(self, service: str, replica: int) -> str:
        return service if self.replicas == 1 else f"{service}-{replica}"


SINGLE = Topology("single")
CLUSTER = Topology("cluster", brokers=3, replicas=2, postgres=True)
TOPOLOGIES = {topology.name: topology for topology in (SINGLE, CLUSTER)}


# Services run as `python -OO` would: without docstrings and asserts, ≈ 6 MiB less resident
# memory each (README, "Numbers"). PYTHONOPTIMIZE set in the environment wins (0 keeps both).
PYTHONOPTIMIZE = "PYTHONOPTIMIZE"
SERVICE_PYTHONOPTIMIZE = "2"


def service_python_env() -> dict[str, str]:
    """The interpreter settings every service process gets (the stack's, the bench's)."""
    return {PYTHONOPTIMIZE: os.environ.get(PYTHONOPTIMIZE, SERVICE_PYTHONOPTIMIZE)}


def topology_from_env() -> Topology:
    name = os.environ.get("SHOP_TOPOLOGY", SINGLE.name)
    if name not in TOPOLOGIES:
        raise StackError(f"SHOP_TOPOLOGY must be one of {', '.join(TOPOLOGIES)}, got {name!r}")
    return TOPOLOGIES[name]


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "deploy" / "versions.env").is_file():
            return parent
    raise StackError(f"cannot find the repository root above {here}")


def certs_dir() -> Path:
    """Where `make certs` writes and a SHOP_TLS=1 `make run` reads: SHOP_TLS_DIR, else
    <repo>/var/certs (for `make run-cluster` too: its certificates name 127.0.0.1)."""
    return Path(os.environ.get(TLS_DIR) or repo_root() / "var" / "certs").resolve()


def tls_from_env() -> bool:
    """SHOP_TLS, read as the services read it."""
    try:
        return tls_enabled(Env())
    except SettingsError as exc:
        raise StackError(str(exc)) from None


def client_tls_from_env() -> TlsFiles | None:
    """What a tool (make demo, make bench, make profile) shows a SHOP_TLS=1 stack: the client
    certificate in the certificates folder, or SHOP_TLS_CLIENT_CERT/_KEY and SHOP_TLS_CA."""
    try:
        return client_tls(Env(), certs_dir())
    except SettingsError as exc:
        raise StackError(str(exc)) from None


def open_channel(
    target: str,
    tls: TlsFiles | None,
    *,
    server_name: str | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A channel to `target`, over mutual TLS when `tls` is given; `server_name`: the name
    the server's certificate must hold (else its address, which every shop certificate has)."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=list(options))
    named = [server_name_option(server_name)] if server_name else []
    return grpc.aio.secure_channel(target, tls.channel_credentials(), options=[*options, *named])


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
    postgres: int = 55432  # the cluster's; not 5432, where a system PostgreSQL may listen
    grpc: dict[str, int] = field(default_factory=lambda: dict(registry.DEFAULT_GRPC_PORTS))
    metrics: dict[str, int] = field(default_factory=lambda: dict(registry.DEFAULT_METRICS_PORTS))
    # Brokers and replicas after the first: by default at fixed offsets from the first's
    # ports (kafka-2 on 9094/9095, orders-2 on 50061/9111), free ports in a test stack.
    extra: dict[str, int] = field(default_factory=dict)
    free_extras: bool = False

    def _extra(self, key: str, default: int) -> int:
        if key not in self.extra:
            self.extra[key] = free_port() if self.free_extras else default
        return self.extra[key]

    def broker(self, node: int) -> tuple[int, int]:
        """Kafka node `node` (from 1): its client port and its controller port."""
        if node == 1:
            return self.kafka, self.kafka_controller
        offset = 2 * (node - 1)
        return (
            self._extra(f"kafka-{node}", self.kafka + offset),
            self._extra(f"kafka-{node}-controller", self.kafka_controller + offset),
        )

    def replica(self, service: str, replica: int) -> tuple[int, int]:
        """Replica `replica` (from 1) of a service: its gRPC port and its metrics port."""
        if replica == 1:
            return self.grpc[service], self.metrics[service]
        offset = 10 * (replica - 1)
        return (
            self._extra(f"{service}-{replica}-grpc", self.grpc[service] + offset),
            self._extra(f"{service}-{replica}-metrics", self.metrics[service] + offset),
        )

    @classmethod
    def free(cls) -> Ports:
        """Ports nobody listens on right now: for test stacks beside `make run`'s."""
        ports = cls(free_extras=True)
        for name, value in vars(ports).items():
            if isinstance(value, int) and not isinstance(value, bool):
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
        ports.postgres = _env_port("POSTGRES_PORT", ports.postgres)
        for name in SERVICES:
            ports.grpc[name] = _env_port(f"{name.upper()}_GRPC_PORT", ports.grpc[name])
            ports.metrics[name] = _env_port(f"{name.upper()}_METRICS_PORT", ports.metrics[name])
        return ports

    def as_env(self) -> dict[str, str]:
        """The variables `from_env` reads, set to these ports: for commands run against a
        stack on other ports (a test's)."""
        env = {
            "KAFKA_PORT": self.kafka,
            "KAFKA_CONTROLLER_PORT": self.kafka_controller,
            "JAEGER_UI_PORT": self.jaeger_ui,
            "JAEGER_OTLP_GRPC_PORT": self.jaeger_otlp_grpc,
            "JAEGER_OTLP_HTTP_PORT": self.jaeger_otlp_http,
            "JAEGER_QUERY_GRPC_PORT": self.jaeger_query_grpc,
            "JAEGER_HEALTH_PORT": self.jaeger_health,
            "PROMETHEUS_PORT": self.prometheus,
            "POSTGRES_PORT": self.postgres,
        }
        for name in SERVICES:
            env[f"{name.upper()}_GRPC_PORT"] = self.grpc[name]
            env[f"{name.upper()}_METRICS_PORT"] = self.metrics[name]
        return {key: str(value) for key, value in env.items()}


async def _http_ok(url: str) -> bool:
    def get() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)

    return await asyncio.to_thread(get)


async def grpc_serving(address: str, tls: TlsFiles | None = None) -> bool:
    async with open_channel(address, tls) as channel:
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


def _root_owned_folder(path: Path) -> Path:
    """A folder only root may write to (others may pass through): the `postgres` user's
    data can sit in it without anyone swapping a path under us."""
    path.mkdir(mode=0o711, exist_ok=True)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise StackError(f"{path} must be a folder owned by root that only root may write to")
    return path


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
    """Builds the process specs for one stack (`make run`'s or a test session's).

    With `tls_dir` every service serves mutual TLS with the certificates in that folder
    (`prepare_certs` makes what is missing), and the stack's own checks show its client
    certificate; without it, plaintext.
    """

    def __init__(
        self,
        var_dir: Path,
        ports: Ports,
        *,
        root: Path | None = None,
        topology: Topology = SINGLE,
        tls_dir: Path | None = None,
    ) -> None:
        self.root = root or repo_root()
        self.var_dir = var_dir
        self.ports = ports
        self.topology = topology
        self.tls_dir = tls_dir
        self.tools = self.root / ".tools"

    def prepare_certs(self) -> list[str]:
        """Makes the certificates the stack lacks (none without TLS); the names made."""
        if self.tls_dir is None:
            return []
        return ensure_certs(self.tls_dir, SERVICES)

    @cached_property
    def client_tls(self) -> TlsFiles | None:
        """The client certificate the stack's own checks and tools show (None: plaintext)."""
        if self.tls_dir is None:
            return None
        try:
            return files_in(self.tls_dir, "client")
        except SettingsError as exc:
            raise StackError(str(exc)) from None

    def channel(self, service: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        """A channel to every replica of `service`, checking its certificate names `service`."""
        return open_channel(
            self.grpc_target(service), self.client_tls, server_name=service, options=options
        )

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(
            f"127.0.0.1:{self.ports.broker(node)[0]}"
            for node in range(1, self.topology.brokers + 1)
        )

    def _tool(self, name: str) -> str:
        path = self.tools / "bin" / name
        if not path.exists():
            raise StackError(f"{path} is missing: run `deploy/bootstrap.sh` (or `make bootstrap`)")
        return str(path)

    async def kafka_nodes(self) -> list[ProcessSpec]:
        return [await self.kafka(node) for node in range(1, self.topology.brokers + 1)]

    async def kafka(self, node: int = 1) -> ProcessSpec:
        """Kafka node `node` in KRaft combined mode (broker and controller in one process)."""
        libs = self.tools / "kafka-libs"
        if not libs.exists():
            raise StackError(f"{libs} is missing: run `deploy/bootstrap.sh kafka`")
        topology = self.topology
        name = topology.kafka_name(node)
        home = self.var_dir / name
        (home / "logs").mkdir(parents=True, exist_ok=True)
        port, controller_port = self.ports.broker(node)
        if topology.brokers == 1:
            # A dynamic quorum of one, formatted with --standalone.
            quorum = f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}"
        else:
            quorum = "controller.quorum.voters=" + ",".join(
                f"{n}@127.0.0.1:{self.ports.broker(n)[1]}" for n in range(1, topology.brokers + 1)
            )
        template = (self.root / "deploy" / "kafka" / "server.properties").read_text()
        config = home / "server.properties"
        config.write_text(
            template.format(
                node_id=node,
                quorum=quorum,
                port=port,
                controller_port=controller_port,
                data_dir=home / "data",
                replication=topology.replication,
                min_insync_replicas=topology.min_insync_replicas,
            )
        )
        java = ["java", "-cp", f"{libs}/*"]
        log4j = [
            f"-Dlog4j2.configurationFile={self.root / 'deploy' / 'kafka' / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={home / 'logs'}",
        ]
        id_file = self.var_dir / topology.kafka_name(1) / "cluster.id"  # one id per cluster
        if not id_file.exists():
            id_file.write_text(_kafka_cluster_id())
        await _setup_command(
            f"formatting {name}'s storage",
            *java[:1],
            *log4j,
            *java[1:],
            "kafka.tools.StorageTool",
            "format",
            *(["--standalone"] if topology.brokers == 1 else []),
            "--ignore-formatted",
            "-t",
            id_file.read_text().strip(),
            "-c",
            str(config),
        )
        heap = "768m" if topology.brokers == 1 else "512m"
        return ProcessSpec(
            name=name,
            argv=[
                "java",
                "-Xms256m",
                f"-Xmx{heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                *log4j,
                "-cp",
                f"{libs}/*",
                "kafka.Kafka",
                str(config),
            ],
            # Its own listener answers: in a cluster, "ready" must not mean "another node is".
            ready=lambda: kafka_ready(f"127.0.0.1:{port}"),
            ports={f"{name}": port, f"{name} controller": controller_port},
        )

    async def postgres(self, port: int, *, fresh: bool = False) -> ProcessSpec:
        """A PostgreSQL server (trust auth, loopback only); `fresh` starts from empty data
        (the tests'), else the data of the last run is kept (the cluster's)."""
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
            home = _root_owned_folder(Path(tempfile.gettempdir()) / "shop-postgres") / digest
        else:
            home = self.var_dir / "postgres"
        if fresh:
            shutil.rmtree(home, ignore_errors=True)
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
            # The server itself, as the `postgres` user when we are root: not under runuser,
            # which answers a SIGTERM by killing its child 2 s later — a crash.
            argv=[
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(home),
                # Fast to test on, and still keeps every commit if the server crashes; only a
                # crash of the machine could lose data (no fsync).
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",  # six service replicas' pools and their migrations
            ],
            ready=lambda: _postgres_ready(port),
            ports={"postgres": port},
            user="postgres" if as_user else None,
            # PostgreSQL's "fast" shutdown, sent to the postmaster alone: clients are
            # disconnected, a checkpoint is written, the server exits.
            stop_signal=signal.SIGINT,
            signal_group=False,
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
                        "targets": [f"127.0.0.1:{self.ports.replica(name, replica)[1]}"],
                        "labels": {
                            "service": name,
                            "replica": self.topology.instance_name(name, replica),
                        },
                    }
                    for name in SERVICES
                    for replica in self.replicas
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

    def infrastructure_ports(self) -> dict[str, int]:
        """Kafka's and PostgreSQL's ports, known before their specs (which touch the disk)."""
        ports = {}
        for node in range(1, self.topology.brokers + 1):
            name = self.topology.kafka_name(node)
            ports[name], ports[f"{name} controller"] = self.ports.broker(node)
        if self.topology.postgres:
            ports["postgres"] = self.ports.postgres
        return ports

    @property
    def replicas(self) -> range:
        return range(1, self.topology.replicas + 1)

    def grpc_target(self, name: str) -> str:
        """A gRPC target that reaches every replica of a service (one address when one)."""
        addresses = [f"127.0.0.1:{self.ports.replica(name, r)[0]}" for r in self.replicas]
        return addresses[0] if len(addresses) == 1 else "ipv4:" + ",".join(addresses)

    def database_url(self, name: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.ports.postgres}/{name}"

    async def create_databases(self) -> None:
        """One database per service on the stack's PostgreSQL (replicas share it)."""
        import asyncpg

        connection = await asyncpg.connect(
            host="127.0.0.1", port=self.ports.postgres, user="postgres", timeout=5
        )
        try:
            existing = {row[0] for row in await connection.fetch("SELECT datname FROM pg_database")}
            for name in SERVICES:
                if name not in existing:
                    await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    def service_env(self, name: str, replica: int = 1) -> dict[str, str]:
        p = self.ports
        grpc_port, metrics_port = p.replica(name, replica)
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "SHOP_VAR_DIR": str(self.var_dir),
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{p.jaeger_otlp_grpc}",
            "INVENTORY_ADDRESS": self.grpc_target("inventory"),
            f"{name.upper()}_GRPC_PORT": str(grpc_port),
            f"{name.upper()}_METRICS_PORT": str(metrics_port),
            "PYTHONUNBUFFERED": "1",
            **service_python_env(),
        }
        if self.topology.replication > 1:
            env["KAFKA_REPLICATION_FACTOR"] = str(self.topology.replication)
        if self.topology.postgres:
            env[f"{name.upper()}_DATABASE_URL"] = self.database_url(name)
        env |= self._tls_env(name)
        if self.topology.replicas > 1:
            # Each replica keeps its own local state (Faust's folder); the data is shared.
            instance = self.topology.instance_name(name, replica)
            env["SHOP_VAR_DIR"] = str(self.var_dir / "replicas" / instance)
            env["OTEL_RESOURCE_ATTRIBUTES"] = f"service.instance.id={instance}"
        return env

    def _tls_env(self, name: str) -> dict[str, str]:
        """Every TLS variable, spelled out: a value in the shell must not mix another CA in."""
        if self.tls_dir is None:
            return {TLS_SWITCH: "0"}
        tls_dir = self.tls_dir.resolve()
        prefix = name.upper()
        return {
            TLS_SWITCH: "1",
            TLS_DIR: str(tls_dir),
            TLS_CA: str(tls_dir / "ca.pem"),
            f"{prefix}_TLS_CERT": str(tls_dir / f"{name}.pem"),
            f"{prefix}_TLS_KEY": str(tls_dir / f"{name}-key.pem"),
        }

    def service(
        self, name: str, extra_env: dict[str, str] | None = None, *, replica: int = 1
    ) -> ProcessSpec:
        grpc_port, metrics_port = self.ports.replica(name, replica)
        instance = self.topology.instance_name(name, replica)
        address = f"127.0.0.1:{grpc_port}"
        return ProcessSpec(
            name=instance,
            argv=[sys.executable, "-m", name],
            env={**self.service_env(name, replica), **(extra_env or {})},
            cwd=self.root,
            ready=lambda: grpc_serving(address, self.client_tls),
            ports={f"{instance} grpc": grpc_port, f"{instance} metrics": metrics_port},
            start_timeout=60,
        )

    def services(self, extra_env: dict[str, str] | None = None) -> list[ProcessSpec]:
        """Every replica of every service, in start order (replica 1 runs migrations first)."""
        return [
            self.service(name, extra_env, replica=replica)
            for name in SERVICES
            for replica in self.replicas
        ]


def _read_state(path: Path) -> list[dict[str, Any]]:
    try:
        entries: list[dict[str, Any]] = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return entries


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class Supervisor:
    """Starts specs in order, each only after the previous one is ready; stops in reverse.

    Once `supervise` runs, a process that exits by itself is started again, as Kubernetes
    would: after 1 s, doubling up to 30 s while it keeps failing, logged and counted.
    """

    MAX_BACKOFF = 30.0
    STABLE_AFTER = 60.0  # up this long before dying: the next restart waits 1 s again

    def __init__(
        self, var_dir: Path, out: TextIO | None, render: Callable[[str], str] = as_is
    ) -> None:
        self.var_dir = var_dir
        self.out = out
        self.render = render  # how the processes' lines are shown on `out`
        self.running: list[Process] = []
        self._restarting: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self.state_file = var_dir / "processes.json"
        self._owned: set[str] = set()  # names of every process this supervisor started

    def _write_state(self) -> None:
        """What runs now, for other commands (`make status`): name, pid, restarts.

        Supervisors can share a var dir (a test session starts the platform with one and
        the services with another): each keeps its own entries and leaves the others' in
        place, unless their process is gone (left behind by a supervisor that was killed).
        """
        others = [
            entry
            for entry in _read_state(self.state_file)
            if entry["name"] not in self._owned and _alive(entry["pid"])
        ]
        state = others + [
            {"name": p.name, "pid": p.pid, "up": not p.exited, "restarts": p.restarts}
            for p in self.running
        ]
        if not state:
            self.state_file.unlink(missing_ok=True)
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2) + "\n")
        temporary.replace(self.state_file)

    @staticmethod
    def check_ports(specs: Sequence[ProcessSpec]) -> None:
        check_ports({role: port for spec in specs for role, port in spec.ports.items()})

    def _process(self, spec: ProcessSpec) -> Process:
        process = Process(
            spec,
            len(self.running),
            self.out,
            self.var_dir / "logs" / f"{spec.name}.log",
            self.render,
        )
        self.running.append(process)
        self._owned.add(spec.name)
        return process

    async def start(self, spec: ProcessSpec) -> Process:
        process = self._process(spec)
        await process.start()
        self._write_state()
        await process.wait_ready()
        return process

    async def start_together(self, specs: Sequence[ProcessSpec]) -> list[Process]:
        """Start all, then wait until each is ready: for peers that need each other (a
        Kafka quorum is not ready before a majority of its voters runs)."""
        processes = [self._process(spec) for spec in specs]
        for process in processes:
            process.peers = processes
            await process.start()
        self._write_state()
        await asyncio.gather(*(process.wait_ready() for process in processes))
        return processes

    def get(self, name: str) -> Process:
        return next(p for p in self.running if p.spec.name == name)

    def _say(self, message: str) -> None:
        print(f"[supervisor] {message}", file=self.out or sys.stderr, flush=True)

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart what exits by itself until `stop` is set (held processes stay down)."""
        while not stop.is_set() and not self._stopping:
            for process in self.running:
                if process.exited and not process.held and process.name not in self._restarting:
                    self._restarting[process.name] = asyncio.create_task(self._restart(process))
            for name, task in list(self._restarting.items()):
                if task.done():
                    del self._restarting[name]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)

    async def _restart(self, process: Process) -> None:
        code = process.returncode
        if process.uptime >= self.STABLE_AFTER:
            process.backoff = 0.0
        process.backoff = min(max(process.backoff * 2, 1.0), self.MAX_BACKOFF)
        self._say(
            f"{process.name} exited with code {code}; restart {process.restarts + 1}"
            f" in {process.backoff:.0f} s"
        )
        await asyncio.sleep(process.backoff)
        if self._stopping or process.held:
            return
        process.restarts += 1
        await process.start()
        self._write_state()
        try:
            await process.wait_ready()
        except StackError as exc:
            self._say(f"{process.name}: {exc}")
            return
        self._say(f"{process.name} is back (pid {process.pid}, restart {process.restarts})")

    async def kill(self, name: str, *, keep_down: bool = False) -> Process:
        """kill -9; restarted as any process that dies, unless `keep_down` (then `release`)."""
        process = self.get(name)
        if keep_down:
            process.held = True
            if (task := self._restarting.get(name)) is not None:
                task.cancel()
        process.signal(signal.SIGKILL)
        if process.proc is not None:
            await process.proc.wait()
        self._write_state()
        return process

    async def hold(self, name: str) -> Process:
        """Stop a process and keep it down until `release` (a planned outage)."""
        process = self.get(name)
        process.held = True
        if (task := self._restarting.get(name)) is not None:
            task.cancel()
        await process.stop()
        self._write_state()
        return process

    async def release(self, name: str) -> Process:
        """Start a held process again, now (`wait_ready` on it to know when it serves)."""
        process = self.get(name)
        process.held = False
        process.backoff = 0.0
        process.restarts += 1
        await process.start()
        self._write_state()
        return process

    def restarts(self) -> dict[str, int]:
        return {p.name: p.restarts for p in self.running if p.restarts}

    async def stop_all(self) -> None:
        """Stop every process, newest first; one that fails to stop does not spare the rest.

        Peers started together stop together: a Kafka node whose quorum is already gone
        cannot shut down cleanly.
        """
        self._stopping = True
        for task in list(self._restarting.values()):
            task.cancel()
        while self.running:
            last = self.running[-1]
            group = [p for p in self.running if p is last or p in last.peers]
            self.running = [p for p in self.running if p not in group]
            results = await asyncio.gather(*(p.stop() for p in group), return_exceptions=True)
            for process, result in zip(group, results, strict=True):
                if isinstance(result, BaseException):
                    print(f"{process.name}: stopping failed: {result!r}", file=sys.stderr)
        self._write_state()
        self._stopping = False


def check_ports(ports: Mapping[str, int]) -> None:
    """Every port free, and none planned twice (a variable set to another's port)."""
    seen: dict[int, str] = {}
    for role, port in ports.items():
        if port in seen:
            raise StackError(f"port {port} is planned for both {seen[port]} and {role}")
        seen[port] = role
        if port_in_use(port):
            raise StackError(
                f"port {port} ({role}) on 127.0.0.1 is already in use: is another"
                f" `make run` (or a test run) up? Stop it or set another port."
            )


async def start_stack(
    stack: Stack,
    supervisor: Supervisor,
    service_env: dict[str, str] | None = None,
    *,
    announce: Callable[[str], None] = lambda _: None,
) -> None:
    """Make missing certificates (TLS), check every port, then start the whole stack in
    dependency order."""
    rest = [stack.jaeger(), stack.prometheus(), *stack.services(service_env)]
    # Before any work on disk: a second run must not touch the data of the one that is up.
    check_ports(stack.infrastructure_ports() | {r: p for s in rest for r, p in s.ports.items()})
    stack.prepare_certs()
    kafka = await stack.kafka_nodes()
    postgres = [await stack.postgres(stack.ports.postgres)] if stack.topology.postgres else []
    announce(", ".join(spec.name for spec in kafka))
    await supervisor.start_together(kafka)
    for spec in postgres:
        announce(spec.name)
        await supervisor.start(spec)
        await stack.create_databases()
    for spec in rest:
        announce(spec.name)
        await supervisor.start(spec)
