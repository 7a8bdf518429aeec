"""`make status`: the running stack on one screen, and an exit status scripts can use.

    python -m shop_devstack status [--watch [SECONDS]] [--var-dir DIR]

Each process (from the supervisor's `processes.json`, its memory and CPU from /proc), each
gRPC server's health, and from Prometheus's recording rules: requests/s, error ratio and
p99 per method, consumer lag, outbox backlog and age, dead letters.

A figure is red or yellow when an alert of deploy/prometheus/rules/alerts.yml says so: the
alert's own expression, evaluated by Prometheus at the moment the figures are read, returns
that figure's series (critical: red, any other severity: yellow); green when the alert
judges the figure and does not. An alert fires only once its condition has held for its
`for:`; the table shows the condition as it is now. Exit status: 1 when anything is red (a
process down, a server not SERVING, Prometheus not answering, a critical alert's condition),
3 when no stack runs in the var dir, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shop_devstack.logs import colours_wanted
from shop_devstack.prometheus import Prometheus, Series
from shop_devstack.running import add_location_arguments, locate
from shop_devstack.stack import SERVICES, Stack

ALERTS = Path("deploy/prometheus/rules/alerts.yml")
NO_STACK = 3
RED, YELLOW, GREEN, BOLD = "31", "33", "32", "1"


def _paint(text: str, code: str | None, enabled: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if enabled and code else text


@dataclass(frozen=True)
class AlertRule:
    name: str
    severity: str
    expr: str

    @property
    def colour(self) -> str:
        return RED if self.severity == "critical" else YELLOW

    @property
    def threshold(self) -> str:
        """The comparisons in its expression, e.g. `> 0.05`."""
        found = re.findall(r"(>=|<=|==|!=|>|<)\s*([-+]?\d[\d.e+-]*)", self.expr)
        return " and ".join(dict.fromkeys(f"{op} {number}" for op, number in found))

    def judges(self, metric: str) -> bool:
        return re.search(rf"(?<![\w:]){re.escape(metric)}(?![\w:])", self.expr) is not None


def alert_rules(path: Path) -> list[AlertRule]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [
        AlertRule(rule["alert"], rule.get("labels", {}).get("severity", "warning"), rule["expr"])
        for group in groups
        for rule in group["rules"]
        if "alert" in rule
    ]


def _matches(series: dict[str, str], row: dict[str, str]) -> bool:
    common = (series.keys() & row.keys()) - {"__name__"}
    return bool(common) and all(series[key] == row[key] for key in common)


@dataclass
class Cell:
    text: str
    colour: str | None = None


@dataclass
class Table:
    title: str
    headings: list[str]
    align: str  # per column: `<` text, `>` a figure
    rows: list[list[Cell]] = field(default_factory=list)

    def render(self, colours: bool) -> str:
        if not self.rows:
            return f"{self.title}: none"
        widths = [
            max(len(h), *(len(row[i].text) for row in self.rows))
            for i, h in enumerate(self.headings)
        ]

        def line(cells: list[Cell]) -> str:
            padded = []
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
                text = cell.text.ljust(width) if self.align[i] == "<" else cell.text.rjust(width)
                padded.append(_paint(text, cell.colour, colours))
            return "  ".join(padded).rstrip()

        heading = _paint(line([Cell(h) for h in self.headings]), BOLD, colours)
        return "\n".join([self.title, heading, *(line(row) for row in self.rows)])


class Judge:
    """Colours figures by the alerts that judge them; remembers every red and yellow."""

    def __init__(self, rules: list[AlertRule], breaching: dict[str, list[dict[str, str]]]) -> None:
        self.rules = rules
        self.breaching = breaching  # alert name -> labels of the series its expression returns
        self.findings: list[tuple[str, str]] = []  # (colour, what)

    def flag(self, colour: str, what: str) -> str:
        self.findings.append((colour, what))
        return colour

    def cell(self, text: str, metric: str, row: dict[str, str], what: str) -> Cell:
        """`text` of a figure of `metric` on the series `row`, coloured by its alerts."""
        rules = [rule for rule in self.rules if rule.judges(metric)]
        if not rules or text == "-":
            return Cell(text)
        hits = [
            rule
            for rule in rules
            if any(_matches(labels, row) for labels in self.breaching.get(rule.name, []))
        ]
        if not hits:
            return Cell(text, GREEN)
        worst = min(hits, key=lambda rule: rule.colour != RED)
        reasons = ", ".join(f"{rule.name} ({rule.threshold}, {rule.severity})" for rule in hits)
        return Cell(text, self.flag(worst.colour, f"{what} {text}: {reasons}"))

    @property
    def red(self) -> bool:
        return any(colour == RED for colour, _ in self.findings)

    def summary(self, colours: bool) -> str:
        """A line per red or yellow figure, reds first (the table's colours in words)."""
        if not self.findings:
            return _paint("all green", GREEN, colours)
        return "\n".join(
            f"{_paint('red   ' if colour == RED else 'yellow', colour, colours)}  {what}"
            for colour, what in sorted(self.findings, key=lambda finding: finding[0] != RED)
        )


# --- processes -------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, float] | None:
    """The process's state letter and CPU seconds so far, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float | None:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


class CpuMeter:
    """CPU use of each process, in % of one core, since the previous reading."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, float]] = {}

    @property
    def primed(self) -> bool:
        return bool(self._last)

    def prime(self, pids: list[int]) -> None:
        for pid in pids:
            self.read(pid)

    def read(self, pid: int) -> float | None:
        stat = _proc_stat(pid)
        if stat is None:
            return None
        now = time.monotonic()
        previous = self._last.get(pid)
        self._last[pid] = (stat[1], now)
        if previous is None or now <= previous[1]:
            return None
        return 100 * (stat[1] - previous[0]) / (now - previous[1])


def _running(entry: dict[str, Any]) -> bool:
    stat = _proc_stat(int(entry["pid"])) if entry.get("pid") else None
    return stat is not None and stat[0] not in "ZX"  # a zombie has exited


async def _health(address: str) -> str:
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
    except grpc.aio.AioRpcError as error:
        return "no answer" if error.code() == grpc.StatusCode.UNAVAILABLE else error.code().name
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


# --- the figures ---------------------------------------------------------------------------

QUERIES = {
    "rps": "shop:grpc_server_requests:rate1m",
    "errors": "shop:grpc_server_errors:ratio_rate5m",
    "p99": "shop:grpc_server_handling_seconds:p99_5m",
    "lag": "shop:kafka_consumer_lag:sum",
    "backlog": "shop:outbox_backlog:sum",
    "oldest": "shop:outbox_oldest_unsent_age_seconds:max",
    "dead": 'sum by (service, topic, reason) (shop_kafka_dead_lettered_total{job="shop"})',
    "up": 'up{job="shop"}',
}


def _number(value: float | None, show: Callable[[float], str]) -> str:
    return "-" if value is None or math.isnan(value) else show(value)


def _by(series: list[Series], *keys: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.get(key, "") for key in keys): s.value for s in series}


@dataclass
class Snapshot:
    """Everything read in one round, and the exit status it makes."""

    text: str
    code: int


@dataclass
class Metrics:
    figures: dict[str, list[Series]]  # by QUERIES' keys
    breaching: dict[str, list[dict[str, str]]]  # alert name -> labels of its series now
    error: str | None = None


def read_metrics(prometheus: Prometheus, rules: list[AlertRule]) -> Metrics:
    """The figures and every alert's expression, all at one instant."""
    at = time.time()
    try:
        return Metrics(
            {key: prometheus.query(expr, at) for key, expr in QUERIES.items()},
            {rule.name: [s.labels for s in prometheus.query(rule.expr, at)] for rule in rules},
        )
    except OSError as error:
        return Metrics({}, {}, f"prometheus does not answer at {prometheus.url} ({error})")


def _entries(state_file: Path) -> list[dict[str, Any]]:
    try:
        entries: list[dict[str, Any]] = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return []
    return entries


async def snapshot(stack: Stack, rules: list[AlertRule], cpu: CpuMeter, colours: bool) -> Snapshot:
    state_file = stack.var_dir / "processes.json"
    entries = _entries(state_file)
    if not entries:
        return Snapshot(
            f"no stack runs in {stack.var_dir} (no {state_file.name}): start one with `make run`",
            NO_STACK,
        )
    first_round = not cpu.primed
    if first_round:
        cpu.prime([int(e["pid"]) for e in entries if e.get("pid")])
    instances = {
        stack.topology.instance_name(name, n): f"127.0.0.1:{stack.ports.replica(name, n)[0]}"
        for name in SERVICES
        for n in stack.replicas
    }
    healths, metrics, _ = await asyncio.gather(
        asyncio.gather(*(_health(address) for address in instances.values())),
        asyncio.to_thread(read_metrics, Prometheus(stack.ports.prometheus), rules),
        asyncio.sleep(0.5 if first_round else 0),  # a first CPU reading needs an interval
    )
    judge = Judge(rules, metrics.breaching)
    if metrics.error:
        judge.flag(RED, f"{metrics.error}: no metrics")
    tables = [
        _processes(entries, dict(zip(instances, healths, strict=True)), metrics, cpu, judge),
        *(_metric_tables(metrics.figures, judge) if not metrics.error else []),
    ]
    header = (
        f"shop status  {time.strftime('%Y-%m-%d %H:%M:%S')}  {stack.var_dir}\n"
        f"colours from {ALERTS}: "
        + "; ".join(f"{r.name} {r.threshold} ({r.severity})" for r in rules)
    )
    text = "\n\n".join([header, *(t.render(colours) for t in tables), judge.summary(colours)])
    return Snapshot(text, 1 if judge.red else 0)


def _processes(
    entries: list[dict[str, Any]],
    health: dict[str, str],
    metrics: Metrics,
    cpu: CpuMeter,
    judge: Judge,
) -> Table:
    """A row per process the supervisor runs, and per service instance it should run."""
    table = Table(
        "processes",
        ["process", "state", "pid", "rss MB", "cpu %", "restarts", "health", "metrics"],
        align="<<>>>><<",
    )
    scraped = _by(metrics.figures.get("up", []), "replica")
    listed = {entry["name"]: entry for entry in entries}
    for name in [*listed, *(n for n in health if n not in listed)]:
        entry = listed.get(name, {"name": name, "pid": None, "restarts": 0})
        pid = entry.get("pid")
        running = _running(entry)
        if running:
            state = Cell("up", GREEN)
        else:
            state = Cell(
                "down" if name in listed else "not started",
                judge.flag(RED, f"{name} is not running"),
            )
        row = [
            Cell(name),
            state,
            Cell(str(pid) if pid else "-"),
            Cell(_number(_rss_mb(pid) if running and pid else None, lambda v: f"{v:.0f}")),
            Cell(_number(cpu.read(pid) if running and pid else None, lambda v: f"{v:.1f}")),
            Cell(str(entry.get("restarts", 0))),
        ]
        if name in health:
            serving = health[name] == "SERVING"
            row.append(
                Cell(
                    health[name],
                    GREEN if serving else judge.flag(RED, f"{name} health: {health[name]}"),
                )
            )
        else:
            row.append(Cell("-"))
        target = scraped.get((name,))
        row.append(
            judge.cell(
                _number(target, lambda v: "up" if v == 1 else "down"),
                "up",
                {"replica": name},
                f"{name} metrics target",
            )
        )
        table.rows.append(row)
    return table


def _metric_tables(figures: dict[str, list[Series]], judge: Judge) -> list[Table]:
    methods = Table(
        "grpc methods (recording rules)",
        ["service / method", "rps 1m", "errors 5m", "p99 5m"],
        align="<>>>",
    )
    keys = ("service", "grpc_service", "grpc_method")
    rps, errors, p99 = (_by(figures[k], *keys) for k in ("rps", "errors", "p99"))
    for key in sorted(rps.keys() | errors.keys() | p99.keys()):
        service, grpc_service, method = key
        row = dict(zip(keys, key, strict=True))
        name = f"{service} {grpc_service.rsplit('.', 1)[-1]}/{method}"
        methods.rows.append(
            [
                Cell(name),
                Cell(_number(rps.get(key), lambda v: f"{v:.2f}")),
                judge.cell(
                    _number(errors.get(key), lambda v: f"{100 * v:.1f} %"),
                    QUERIES["errors"],
                    row,
                    f"{name} errors",
                ),
                judge.cell(
                    _number(p99.get(key), lambda v: f"{1000 * v:.0f} ms"),
                    QUERIES["p99"],
                    row,
                    f"{name} p99",
                ),
            ]
        )

    lag = Table(
        "consumer lag (each service's consumer group)", ["service", "topic", "lag"], align="<<>"
    )
    for series in sorted(figures["lag"], key=lambda s: (s.labels["service"], s.labels["topic"])):
        service, topic = series.labels["service"], series.labels["topic"]
        lag.rows.append(
            [
                Cell(service),
                Cell(topic),
                judge.cell(
                    _number(series.value, lambda v: f"{v:.0f}"),
                    QUERIES["lag"],
                    series.labels,
                    f"{service} lag on {topic}",
                ),
            ]
        )

    outbox = Table("outbox", ["service", "backlog", "oldest unsent"], align="<>>")
    backlog, oldest = _by(figures["backlog"], "service"), _by(figures["oldest"], "service")
    for (service,) in sorted(backlog.keys() | oldest.keys()):
        outbox.rows.append(
            [
                Cell(service),
                Cell(_number(backlog.get((service,)), lambda v: f"{v:.0f}")),
                judge.cell(
                    _number(oldest.get((service,)), lambda v: f"{v:.0f} s"),
                    "shop_outbox_oldest_unsent_age_seconds",
                    {"service": service},
                    f"{service} oldest unsent outbox row",
                ),
            ]
        )

    dead = Table(
        "dead letters (since each service started)",
        ["service", "topic", "reason", "events"],
        align="<<<>",
    )
    for series in sorted(figures["dead"], key=lambda s: tuple(s.labels.values())):
        labels = series.labels
        dead.rows.append(
            [
                Cell(labels["service"]),
                Cell(labels["topic"]),
                Cell(labels["reason"]),
                judge.cell(
                    _number(series.value, lambda v: f"{v:.0f}"),
                    "shop_kafka_dead_lettered_total",
                    labels,
                    f"{labels['service']} dead letters from {labels['topic']} ({labels['reason']})",
                ),
            ]
        )
    return [methods, lag, outbox, dead]


async def status(stack: Stack, rules: list[AlertRule], watch: float | None) -> int:
    colours = colours_wanted(sys.stdout)
    cpu = CpuMeter()
    while True:
        shot = await snapshot(stack, rules, cpu, colours)
        if watch is None:
            print(shot.text)
            return shot.code
        print(("\033[H\033[2J" if colours else "\n") + shot.text, flush=True)
        await asyncio.sleep(watch)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shop-stack status", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=2.0,
        default=None,
        metavar="SECONDS",
        help="refresh every SECONDS (2) until Ctrl-C",
    )
    add_location_arguments(parser)
    args = parser.parse_args(argv)
    stack = locate(args.var_dir)
    rules = alert_rules(stack.root / ALERTS)
    try:
        return asyncio.run(status(stack, rules, args.watch))
    except KeyboardInterrupt:
        return 0
