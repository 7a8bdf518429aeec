"""Settings read from environment variables once, at start-up.

Every variable has a default that works on a developer machine; a malformed value stops
the process with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shop_chassis.tls import TlsFiles

from shop_chassis.registry import DEFAULT_GRPC_PORTS, DEFAULT_METRICS_PORTS


class SettingsError(ValueError):
    """A configuration variable is missing or malformed."""


class Env:
    """Typed access to environment variables with errors that name the variable."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def __contains__(self, name: str) -> bool:
        return name in self._environ

    def text(self, name: str, default: str) -> str:
        value = self._environ.get(name, default).strip()
        if not value:
            raise SettingsError(f"{name} is set but empty")
        return value

    def integer(
        self, name: str, default: int, *, minimum: int = 0, maximum: int = 2**31 - 1
    ) -> int:
        raw = self._environ.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
        if not minimum <= value <= maximum:
            raise SettingsError(f"{name} must be between {minimum} and {maximum}, got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        raw = self._environ.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {value}")
        return value

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, minimum=1, maximum=65535)

    def flag(self, name: str, default: bool) -> bool:
        raw = self._environ.get(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise SettingsError(f"{name} must be 1 or 0 (true/false, yes/no, on/off), got {raw!r}")


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


_DAY = 24 * 3600


@dataclass(frozen=True, slots=True)
class Retention:
    """How long rows kept only for bookkeeping live, and how often the pruner looks for them.

    Dedupe records must outlive the longest time an event can be delivered again: with this
    project's broker settings, up to 8 days after it was written (README, "Bounded data").
    """

    sent_outbox_rows: timedelta
    processed_events: timedelta
    prune_interval_seconds: float

    @classmethod
    def from_env(cls, env: Env) -> Retention:
        return cls(
            sent_outbox_rows=timedelta(seconds=env.integer("OUTBOX_RETENTION_SECONDS", 7 * _DAY)),
            processed_events=timedelta(
                seconds=env.integer("PROCESSED_EVENTS_RETENTION_SECONDS", 14 * _DAY, minimum=1)
            ),
            prune_interval_seconds=env.integer(
                "PRUNE_INTERVAL_SECONDS", 300, minimum=1, maximum=_DAY
            ),
        )


@dataclass(frozen=True, slots=True)
class GrpcLimits:
    """What one gRPC server accepts before it refuses (README, "Limits and deadlines").

    - a request larger than `max_request_bytes` is refused RESOURCE_EXHAUSTED by grpc itself;
    - beyond `max_concurrent_rpcs` calls in progress (open streams and health checks count)
      a new call is refused RESOURCE_EXHAUSTED at once instead of queueing without bound.
      The default is twice `make bench`'s largest concurrency (128: the latency, step and
      spike profiles), so no bench profile is refused;
    - a unary call whose caller set no deadline is given `default_deadline_seconds`, then
      answered DEADLINE_EXCEEDED. Server streams are exempt: they run until the client
      cancels.
    """

    max_request_bytes: int = 1024 * 1024
    max_concurrent_rpcs: int = 256
    default_deadline_seconds: float = 30.0

    @classmethod
    def from_env(cls, env: Env) -> GrpcLimits:
        default = cls()
        return cls(
            max_request_bytes=env.integer(
                "SHOP_GRPC_MAX_REQUEST_BYTES", default.max_request_bytes, minimum=1024
            ),
            max_concurrent_rpcs=env.integer(
                "SHOP_GRPC_MAX_CONCURRENT_RPCS", default.max_concurrent_rpcs, minimum=1
            ),
            default_deadline_seconds=env.number(
                "SHOP_GRPC_DEFAULT_DEADLINE_SECONDS",
                default.default_deadline_seconds,
                minimum=0.01,
            ),
        )


# The event loops a service can run on: uvloop (libuv) by default, the stdlib's for comparison.
EVENT_LOOPS = frozenset({"uvloop", "asyncio"})


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """What the chassis needs to run one service process."""

    service: str
    bind_host: str
    grpc_port: int
    metrics_port: int
    kafka_bootstrap_servers: str
    kafka_consumer_group: str
    topic_partitions: int
    topic_replication_factor: int
    var_dir: Path
    log_level: str
    log_format: str  # "json", "console" or "auto" (console on a TTY)
    shutdown_grace_seconds: float
    retention: Retention
    tls: TlsFiles | None  # SHOP_TLS=1: this service's certificate, key and the CA (tls.py)
    grpc_limits: GrpcLimits
    event_loop: str = "uvloop"  # SHOP_EVENT_LOOP: "uvloop" or "asyncio" (the stdlib's)

    @property
    def grpc_address(self) -> str:
        return f"{self.bind_host}:{self.grpc_port}"

    @property
    def data_dir(self) -> Path:
        """This service's own folder under var/ (databases, Faust state)."""
        return self.var_dir / self.service

    @classmethod
    def from_env(cls, service: str, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        from shop_chassis.tls import service_tls  # tls.py reads its variables through Env

        env = Env(environ)
        prefix = service.upper()
        log_format = env.text("LOG_FORMAT", "auto").lower()
        if log_format not in {"json", "console", "auto"}:
            raise SettingsError(f"LOG_FORMAT must be json, console or auto, got {log_format!r}")
        log_level = env.text("LOG_LEVEL", "INFO").upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise SettingsError(
                f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}"
            )
        if "KAFKA_CONSUMER_GROUP" in env:
            # No longer read: `make run` hands its environment to every service, and one group
            # for all of them split each topic's events between them.
            raise SettingsError(
                f"KAFKA_CONSUMER_GROUP is no longer read; set {prefix}_KAFKA_CONSUMER_GROUP"
                " (each service has its own consumer group)"
            )
        event_loop = env.text("SHOP_EVENT_LOOP", "uvloop").lower()
        if event_loop not in EVENT_LOOPS:
            raise SettingsError(f"SHOP_EVENT_LOOP must be uvloop or asyncio, got {event_loop!r}")
        var_dir = Path(env.text("SHOP_VAR_DIR", "var")).resolve()
        return cls(
            service=service,
            bind_host=env.text("SHOP_BIND_HOST", "127.0.0.1"),
            grpc_port=env.port(f"{prefix}_GRPC_PORT", DEFAULT_GRPC_PORTS.get(service, 50050)),
            metrics_port=env.port(
                f"{prefix}_METRICS_PORT", DEFAULT_METRICS_PORTS.get(service, 9100)
            ),
            kafka_bootstrap_servers=env.text("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            kafka_consumer_group=env.text(f"{prefix}_KAFKA_CONSUMER_GROUP", f"shop-{service}"),
            topic_partitions=env.integer("KAFKA_TOPIC_PARTITIONS", 3, minimum=1, maximum=1000),
            topic_replication_factor=env.integer(
                "KAFKA_REPLICATION_FACTOR", 1, minimum=1, maximum=10
            ),
            var_dir=var_dir,
            log_level=log_level,
            log_format=log_format,
            shutdown_grace_seconds=env.number("SHUTDOWN_GRACE_SECONDS", 10.0),
            retention=Retention.from_env(env),
            tls=service_tls(env, service, default_dir=var_dir / "certs"),
            grpc_limits=GrpcLimits.from_env(env),
            event_loop=event_loop,
        )
