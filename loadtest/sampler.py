"""What the services cost while a profile runs, read from their /metrics endpoints.

prometheus_client's process collector gives CPU seconds and RSS; the chassis adds the outbox
backlog and the Kafka consumer lag. Scrapes are cheap text pages, once per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from loadtest.ghz import HOST

CPU = "process_cpu_seconds_total"
RSS = "process_resident_memory_bytes"
BACKLOG = "shop_outbox_backlog"
LAG = "shop_kafka_consumer_lag"


@dataclass(frozen=True)
class Reading:
    """One service's figures at one moment (None: the service did not export it)."""

    cpu_s: float | None = None
    rss_bytes: float | None = None
    outbox_backlog: float | None = None
    consumer_lag: float | None = None


def parse_metrics(text: str) -> Reading:
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (CPU, RSS, BACKLOG, LAG):
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return Reading(values.get(CPU), values.get(RSS), values.get(BACKLOG), values.get(LAG))


def scrape(port: int) -> Reading:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=2) as response:
            return parse_metrics(response.read().decode())
    except OSError:
        return Reading()


@dataclass
class Sample:
    at: float  # seconds since the sampler started
    readings: dict[str, Reading]


@dataclass
class Sampler:
    """Samples every service every `every_s` while a profile runs (use as `async with`)."""

    metrics_ports: dict[str, int]
    every_s: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _t0: float = 0.0

    async def sample(self) -> None:
        names = list(self.metrics_ports)
        readings = await asyncio.gather(
            *(asyncio.to_thread(scrape, self.metrics_ports[n]) for n in names)
        )
        self.samples.append(
            Sample(time.monotonic() - self._t0, dict(zip(names, readings, strict=True)))
        )

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            await self.sample()

    async def __aenter__(self) -> Sampler:
        self._t0 = time.monotonic()
        await self.sample()
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.sample()

    def cpu_ms_per_request(self, requests: int) -> dict[str, float | None]:
        """CPU each service spent between the first and the last sample, per request."""
        first, last = self.samples[0].readings, self.samples[-1].readings
        out: dict[str, float | None] = {}
        for name in self.metrics_ports:
            a, b = first[name].cpu_s, last[name].cpu_s
            out[name] = (
                None if a is None or b is None or not requests else (b - a) * 1000 / requests
            )
        return out

    def series(self, name: str, what: str) -> list[tuple[float, float]]:
        """(seconds, value) of one figure of one service, where it was exported."""
        points = []
        for sample in self.samples:
            value = getattr(sample.readings[name], what)
            if value is not None:
                points.append((sample.at, float(value)))
        return points

    def peak_rss_mb(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name in self.metrics_ports:
            values = [v for _, v in self.series(name, "rss_bytes")]
            out[name] = max(values) / 2**20 if values else None
        return out
