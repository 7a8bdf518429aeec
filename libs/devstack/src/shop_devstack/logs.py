"""`make logs`: the running stack's logs merged into one stream, in time order.

    python -m shop_devstack logs [--service orders,kafka] [--level warning] [--id ID]
                                 [--format json] [--since 10m] [--no-follow] [--var-dir DIR]

Every process writes its output to `<var>/logs/<name>.log`: the services structlog JSON
lines, Kafka, Jaeger, Prometheus and PostgreSQL their own formats. Each line is labelled
with its process and read for its time and level where its format has them; a line that
has neither (a Java stack trace's `at ...`) belongs to the line before it.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from shop_devstack.procs import COLOURS
from shop_devstack.running import add_location_arguments, locate
from shop_devstack.trace import TRACE_ID

LEVELS = ("debug", "info", "warning", "error", "critical")
_LEVEL_NAMES = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "log": "info",  # PostgreSQL's
    "notice": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "fatal": "critical",
    "panic": "critical",
    "dpanic": "critical",
    "critical": "critical",
}
# Keys every service line has; shown as the line's frame, not as its fields.
_FRAME_KEYS = {"event", "level", "logger", "timestamp", "service", "trace_id", "span_id"}
_EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass
class LogLine:
    process: str  # its log file's name: orders, orders-2, kafka, ...
    time: datetime  # aware; a continuation line has the time of the line it continues
    level: str  # one of LEVELS
    message: str  # without the time and level the line began with
    fields: dict[str, Any] = field(default_factory=dict)  # a service's JSON line, else {}

    @property
    def trace_id(self) -> str | None:
        value = self.fields.get("trace_id")
        return str(value) if value else None

    def as_json(self) -> str:
        if self.fields:
            return json.dumps({"process": self.process, **self.fields})
        return json.dumps(
            {
                "process": self.process,
                "timestamp": self.time.isoformat(),
                "level": self.level,
                "message": self.message,
            }
        )


def _local(text: str, layout: str) -> datetime:
    return datetime.strptime(text, layout).astimezone()  # the writer's clock: this machine's


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _postgres_time(moment: str, zone: str) -> datetime:
    """In its log_timezone: UTC, or else (an abbreviation) this machine's zone."""
    if zone == "UTC":
        return datetime.strptime(moment, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    return _local(moment, "%Y-%m-%d %H:%M:%S.%f")


# (pattern, how its `time` group reads); each has the groups time, level and message.
_FORMATS: list[tuple[re.Pattern[str], Callable[[str], datetime]]] = [
    # Kafka (log4j): [2026-11-30 21:22:06,224] WARN message (logger)
    (
        re.compile(
            r"^\[(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] "
            r"(?P<level>[A-Z]+) (?P<message>.*)$"
        ),
        lambda t: _local(t, "%Y-%m-%d %H:%M:%S,%f"),
    ),
    # Jaeger (zap): 2026-11-30T21:22:12.094Z<TAB>warn<TAB>caller<TAB>message ...
    (
        re.compile(r"^(?P<time>\d{4}-\d\d-\d\dT[\d:.]+Z)\t(?P<level>\w+)\t(?P<message>.*)$"),
        _iso,
    ),
    # Prometheus (logfmt): ts=2026-11-30T21:22:12.094Z caller=main.go:1 level=warn msg="..."
    (
        re.compile(r"^ts=(?P<time>\S+) (?P<message>.*?\blevel=(?P<level>\w+).*)$"),
        _iso,
    ),
    # PostgreSQL: 2026-11-30 21:22:06.224 UTC [123] LOG:  message
    (
        re.compile(
            r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ [A-Z]+) \[\d+\] "
            r"(?P<level>[A-Z]+):\s+(?P<message>.*)$"
        ),
        lambda t: _postgres_time(*t.rsplit(" ", 1)),
    ),
    # Go's standard logger (Jaeger's first line): 2026/11/30 21:22:12 message
    (
        re.compile(r"^(?P<time>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) (?P<level>)(?P<message>.*)$"),
        lambda t: _local(t, "%Y/%m/%d %H:%M:%S"),
    ),
]


def parse(process: str, text: str, previous: LogLine | None) -> LogLine:
    """One line of `process`'s log; `previous` is the line before it in the same file."""
    if text.startswith("{"):
        try:
            fields = json.loads(text)
        except ValueError:
            fields = None
        if isinstance(fields, dict) and "event" in fields:
            return LogLine(
                process,
                _iso(fields["timestamp"]) if "timestamp" in fields else _after(previous),
                _LEVEL_NAMES.get(str(fields.get("level", "")).lower(), "info"),
                str(fields["event"]),
                fields,
            )
    for pattern, read_time in _FORMATS:
        if match := pattern.match(text):
            try:
                moment = read_time(match["time"])
            except ValueError:
                continue
            level = _LEVEL_NAMES.get(match["level"].lower(), "info")
            return LogLine(process, moment, level, match["message"])
    return LogLine(process, _after(previous), previous.level if previous else "info", text.rstrip())


def _after(previous: LogLine | None) -> datetime:
    return previous.time if previous else _EARLIEST


class _FileTail:
    """The lines added to one log file since the last read; starts again from the top of a
    file that was truncated or replaced (a test stack's folder is emptied between runs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.process = path.stem
        self._inode = -1
        self._offset = 0
        self._pending = b""
        self._last: LogLine | None = None

    def read(self) -> list[LogLine]:
        try:
            stat = self.path.stat()
            if stat.st_ino != self._inode or stat.st_size < self._offset:
                self._inode, self._offset, self._pending, self._last = stat.st_ino, 0, b"", None
            with self.path.open("rb") as file:
                file.seek(self._offset)
                chunk = file.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        *complete, self._pending = (self._pending + chunk).split(b"\n")
        lines = []
        for raw in complete:
            if raw.strip():
                self._last = parse(self.process, raw.decode(errors="replace"), self._last)
                lines.append(self._last)
        return lines


def _time(line: LogLine) -> datetime:
    return line.time


class LogFolder:
    """`tail -F` over `<var>/logs`: each `read` returns the lines every `*.log` file gained
    since the last one (all of them the first time), merged in time order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._tails: dict[Path, _FileTail] = {}

    def processes(self) -> list[str]:
        return sorted(path.stem for path in self.folder.glob("*.log"))

    def read(self) -> list[LogLine]:
        for path in self.folder.glob("*.log"):
            self._tails.setdefault(path, _FileTail(path))
        return list(heapq.merge(*(t.read() for t in self._tails.values()), key=_time))


@dataclass
class Selection:
    """Which lines to show: of these processes (`orders` is every replica of it), at this
    level or above, and of this trace or order (an order's lines and every line of a
    trace one of them belongs to: the notifier's line of a CreateOrder has no order id)."""

    processes: tuple[str, ...] = ()
    level: str | None = None
    id: str | None = None
    trace_ids: set[str] = field(default_factory=set)

    def learn(self, lines: Iterable[LogLine]) -> None:
        """Note the traces of the order's lines, before choosing among them."""
        if self.id is None or TRACE_ID.match(self.id):
            return
        for line in lines:
            if line.trace_id and self._names_the_order(line):
                self.trace_ids.add(line.trace_id)

    def _names_the_order(self, line: LogLine) -> bool:
        return line.fields.get("order_id") == self.id or (
            self.id is not None and self.id in line.message
        )

    def wants(self, line: LogLine) -> bool:
        if self.processes and not any(_is_instance(line.process, p) for p in self.processes):
            return False
        if self.level and LEVELS.index(line.level) < LEVELS.index(self.level):
            return False
        if self.id is None:
            return True
        if TRACE_ID.match(self.id):
            return line.trace_id == self.id
        return self._names_the_order(line) or line.trace_id in self.trace_ids

    def choose(self, lines: list[LogLine]) -> list[LogLine]:
        self.learn(lines)
        return [line for line in lines if self.wants(line)]


def _is_instance(process: str, name: str) -> bool:
    """`orders` names orders, orders-1 and orders-2; `orders-2` only itself."""
    return process == name or (
        process.startswith(f"{name}-") and process[len(name) + 1 :].isdigit()
    )


_LEVEL_LABELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARN", "error": "ERROR"}
_LEVEL_COLOURS = {"debug": "2", "warning": "33", "error": "31", "critical": "1;31"}


@dataclass
class Palette:
    """ANSI colours, one per process (in `make run`'s order), or none at all."""

    enabled: bool
    order: list[str] = field(default_factory=list)

    def paint(self, text: str, code: str | None) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled and code else text

    def process(self, name: str) -> str:
        if name not in self.order:
            self.order.append(name)
        return COLOURS[self.order.index(name) % len(COLOURS)]


def render(
    line: LogLine, palette: Palette, *, with_process: bool = True, with_trace: bool = True
) -> str:
    """A readable line: local time, process, level, message, the event's own fields."""
    stamp = line.time.astimezone().strftime("%H:%M:%S.%f")[:-3] if line.time > _EARLIEST else ""
    label = _LEVEL_LABELS.get(line.level, "CRIT")
    parts = [palette.paint(f"{stamp:<12}", "2")]
    if with_process:
        parts.append(palette.paint(f"{line.process:<11}", palette.process(line.process)))
    message = line.message.replace("\t", "  ")  # Jaeger's lines are tab-separated
    parts += [palette.paint(f"{label:<5}", _LEVEL_COLOURS.get(line.level)), message]
    extra = {k: v for k, v in line.fields.items() if k not in _FRAME_KEYS and k != "exception"}
    if with_trace and line.trace_id:
        extra["trace_id"] = line.trace_id
    parts += [palette.paint(f"{key}={_value(value)}", "2") for key, value in extra.items()]
    text = " ".join(parts)
    if "exception" in line.fields:
        text += "\n" + "\n".join(f"    {row}" for row in str(line.fields["exception"]).splitlines())
    return text


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return json.dumps(text) if not text or " " in text else text


def readable(text: str) -> str:
    """A service's JSON line as `make run` shows it on a terminal; other lines as they are."""
    line = parse("", text, None)
    if not line.fields:
        return text
    return render(line, Palette(enabled=True), with_process=False)  # `make run` prefixes it


def _since(text: str) -> datetime:
    """`10m`, `2h`, `30s`, `1d`, or an ISO time (local unless it names its zone)."""
    if match := re.fullmatch(r"(\d+)([smhd])", text):
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
        return datetime.now(UTC) - timedelta(**{unit: int(match[1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (10m, 2h, 30s, 1d) nor an ISO time"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def colours_wanted(out: TextIO) -> bool:
    """Colours on a terminal, unless NO_COLOR is set (no-color.org)."""
    return out.isatty() and "NO_COLOR" not in os.environ


def _process_order(var_dir: Path) -> list[str]:
    """The processes in `make run`'s start order, so each has the colour it has there."""
    try:
        return [entry["name"] for entry in json.loads((var_dir / "processes.json").read_text())]
    except (OSError, ValueError):
        return []


def stream(
    folder: LogFolder,
    selection: Selection,
    write: Callable[[LogLine], None],
    *,
    since: datetime | None,
    follow: bool,
    poll_seconds: float = 0.25,
) -> None:
    for line in selection.choose(folder.read()):
        if since is None or line.time >= since:
            write(line)
    while follow:
        time.sleep(poll_seconds)
        for line in selection.choose(folder.read()):
            write(line)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shop-stack logs", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--service",
        default="",
        help="only these processes, comma-separated (orders = every replica of orders)",
    )
    parser.add_argument(
        "--level", type=lambda s: _LEVEL_NAMES.get(s.lower(), s), choices=LEVELS, default=None
    )
    parser.add_argument("--id", default=None, help="a trace id or an order id")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--since", type=_since, default=None, help="10m, 2h, 1d or an ISO time")
    parser.add_argument(
        "--no-follow", action="store_true", help="stop after the lines already written"
    )
    add_location_arguments(parser)
    args = parser.parse_args(argv)
    stack = locate(args.var_dir)
    logs = stack.var_dir / "logs"
    folder = LogFolder(logs)
    if not logs.is_dir() or not folder.processes():
        print(f"no logs in {logs}: is the stack running? Start it with `make run`.")
        return 3
    wanted = tuple(name for name in args.service.split(",") if name)
    unknown = [
        name
        for name in wanted
        if not any(_is_instance(process, name) for process in folder.processes())
    ]
    if unknown:
        print(
            f"no process named {', '.join(unknown)} writes to {logs};"
            f" there are: {', '.join(folder.processes())}"
        )
        return 2
    selection = Selection(wanted, args.level, args.id.strip().lower() if args.id else None)
    palette = Palette(args.format == "text" and colours_wanted(sys.stdout))
    palette.order = _process_order(stack.var_dir)

    def write(line: LogLine) -> None:
        print(line.as_json() if args.format == "json" else render(line, palette), flush=True)

    try:
        stream(folder, selection, write, since=args.since, follow=not args.no_follow)
    except KeyboardInterrupt:  # how a follower is meant to end
        return 0
    except BrokenPipeError:  # `make logs | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
