"""Profiles: the ghz config files in loadtest/profiles/ and the ghz runs ("jobs") they make.

A *call profile* (it has a "call") is an ordinary ghz config for one endpoint; `ghz --config`
runs it by hand. A *shape profile* has no "call": its ghz options (concurrency, rps, load
schedule, duration) are laid over call profiles named in its "bench" section, either one
after another ("calls") or all at once ("jobs"). A "notification" section instead makes the
bench's own client measure order -> notification latency, and a "telemetry_tax" section runs
one orders call against the stack's orders (tracing on) and a second orders process the bench
starts with tracing off, in alternating rounds.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shop_chassis.registry import SERVICES

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
HEALTH_CALL = "grpc.health.v1.Health/Check"
SERVICE_OF = {service.api: service.name for service in SERVICES}
# What a run does when --profiles is not given: every shape but the long soak and the
# CI smoke test (call profiles run inside the shapes).
DEFAULT_PROFILES = (
    "telemetry_tax",
    "throughput",
    "latency",
    "step",
    "spike",
    "mixed",
    "notification",
    "notify_steady",
)
MAX_TAX_ROUNDS = 10
MAX_DURATION_S = 3600.0
# ghz options that describe the call rather than the load; an anchor run drops them.
CALL_KEYS = ("call", "data", "data-file", "metadata", "proto", "protoset", "import-paths")


class ProfileError(Exception):
    """A profile or its options are wrong; the message says which and why."""


def parse_duration(text: str) -> float:
    """'10', '10s', '1.5m', '500ms', '2m30s' -> seconds (ghz's spelling, a subset)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ProfileError(f"not a duration: {text!r} (e.g. 10, 10s, 500ms, 1m, 2m30s)")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}
    value = sum(float(number) * scale[unit] for number, unit in parts)
    if not 0 < value <= MAX_DURATION_S:
        raise ProfileError(f"{text!r}: must be more than 0 and at most {MAX_DURATION_S:g}s")
    return value


def format_duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


@dataclass(frozen=True)
class Job:
    """One ghz process: `config` is a complete ghz config except host and output."""

    label: str  # names the row in the report: the call profile, plus the role if any
    call_profile: str
    config: dict[str, Any]
    start_s: float = 0.0  # launched this long after the profile starts ("jobs" only)
    role: str = ""  # "base" / "burst" in a spike

    @property
    def service(self) -> str:
        return service_of(str(self.config["call"]))

    @property
    def duration_s(self) -> float:
        return parse_duration(str(self.config["max-duration"]))

    @property
    def step(self) -> StepSchedule | None:
        """The job's rising rates, if it runs a step load schedule."""
        c = self.config
        if c.get("load-schedule") != "step":
            return None
        return StepSchedule(
            int(c["load-start"]),
            int(c["load-step"]),
            int(c["load-end"]),
            parse_duration(str(c["load-step-duration"])),
        )

    @property
    def offered_rps(self) -> float | None:
        """The rate an open-loop job asks for (the top of a step schedule); None if closed."""
        if self.config.get("load-schedule") == "step":
            return float(self.config["load-end"])
        rps = self.config.get("rps")
        return float(rps) if rps else None

    def expected_statuses(self) -> set[str]:
        tags = self.config.get("tags") or {}
        return {s.strip() for s in str(tags.get("expected_status", "OK")).split(",") if s.strip()}

    def anchor_config(self, proto_dir: Path) -> dict[str, Any]:
        """The same load against a bare Health/Check server (which has no reflection)."""
        config = {k: v for k, v in self.config.items() if k not in CALL_KEYS}
        config.update(
            call=HEALTH_CALL,
            data={},
            proto=str(proto_dir / "grpc" / "health" / "v1" / "health.proto"),
        )
        config["import-paths"] = [str(proto_dir)]
        config["tags"] = {"expected_status": "OK"}
        return config


@dataclass(frozen=True)
class StepSchedule:
    start: int
    step: int
    end: int
    step_s: float

    @property
    def rates(self) -> list[int]:
        count = math.ceil((self.end - self.start) / self.step) + 1
        return [min(self.start + i * self.step, self.end) for i in range(count)]


@dataclass(frozen=True)
class NotificationPlan:
    rates: tuple[float, ...]
    seconds_per_rate: float
    settle_s: float
    sku: str


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    together: bool = False  # jobs run at once (mixed, spike, soak) instead of one by one
    jobs: tuple[Job, ...] = ()
    notification: NotificationPlan | None = None
    sample_every_s: float = 1.0
    # telemetry_tax: rounds of (tracing on, tracing off) runs of the one job; 0 otherwise
    telemetry_tax_rounds: int = 0

    @property
    def is_step(self) -> bool:
        return any(job.step is not None for job in self.jobs)

    @property
    def is_spike(self) -> bool:
        return any(job.role == "burst" for job in self.jobs)


def service_of(call: str) -> str:
    service = call.replace("/", ".").rsplit(".", 1)[0]
    if service not in SERVICE_OF:
        raise ProfileError(f"unknown service in call {call!r}; known: {sorted(SERVICE_OF)}")
    return SERVICE_OF[service]


def available(profile_dir: Path = PROFILE_DIR) -> list[str]:
    return sorted(path.stem for path in profile_dir.glob("*.json"))


def read_file(name: str, profile_dir: Path = PROFILE_DIR) -> dict[str, Any]:
    path = profile_dir / f"{name}.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"no profile {name!r}; choose from {available(profile_dir)}") from None
    except (OSError, ValueError) as exc:
        raise ProfileError(f"cannot read profile {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProfileError(f"profile {path} is not a JSON object")
    return raw


def load(name: str, duration_s: float | None = None, profile_dir: Path = PROFILE_DIR) -> Profile:
    """Reads a profile; `duration_s` (--duration) replaces the length of constant-rate loads."""
    raw = read_file(name, profile_dir)
    bench = raw.pop("bench", {})
    description = str(bench.get("description") or (raw.get("tags") or {}).get("measures", ""))
    if "notification" in bench:
        plan = bench["notification"]
        seconds = duration_s or parse_duration(str(plan.get("seconds_per_rate", "5s")))
        rates = tuple(float(r) for r in plan["rates"])
        if not rates or not all(0 < r <= 1000 for r in rates):
            raise ProfileError(f"profile {name}: notification rates must be in (0, 1000]")
        return Profile(
            name,
            description,
            notification=NotificationPlan(
                rates, seconds, parse_duration(str(plan.get("settle", "30s"))), plan["sku"]
            ),
        )
    if "telemetry_tax" in bench:
        plan = bench["telemetry_tax"]
        if not isinstance(plan, dict) or not plan.get("call"):
            raise ProfileError(f'profile {name}: telemetry_tax needs a "call" (a call profile)')
        rounds = plan.get("rounds", 2)
        if isinstance(rounds, bool) or not isinstance(rounds, int):
            raise ProfileError(f"profile {name}: telemetry_tax rounds must be a whole number")
        if not 1 <= rounds <= MAX_TAX_ROUNDS:
            raise ProfileError(f"profile {name}: telemetry_tax rounds must be 1..{MAX_TAX_ROUNDS}")
        job = _job(str(plan["call"]), raw, {}, duration_s, profile_dir)
        if job.service != "orders":
            raise ProfileError(
                f"profile {name}: telemetry_tax measures an orders call (the bench starts a"
                f" second orders process), not {job.config['call']}"
            )
        if placeholders(job.config.get("data")) - {"ORDER_ID"}:
            raise ProfileError(
                f"profile {name}: telemetry_tax prepares one order per side (${{ORDER_ID}});"
                f" {plan['call']} uses other placeholders"
            )
        return Profile(name, description, jobs=(job,), telemetry_tax_rounds=rounds)
    if "call" in raw:  # a call profile: itself, with its own load options
        return Profile(name, description, jobs=(_job(name, {}, {}, duration_s, profile_dir),))
    if "calls" in bench:
        jobs = []
        for entry in bench["calls"]:  # a call profile's name, or {"call": name, <overrides>}
            spec = dict(entry) if isinstance(entry, dict) else {"call": entry}
            call_name = str(spec.pop("call"))
            jobs.append(_job(call_name, raw, spec, duration_s, profile_dir))
        return Profile(name, description, jobs=tuple(jobs))
    if "jobs" in bench:
        total_s = duration_s or parse_duration(str(raw.get("max-duration", "10s")))
        together: list[Job] = []
        for spec in bench["jobs"]:
            spec = dict(spec)
            call_name = spec.pop("call")
            role = str(spec.pop("role", ""))
            start = float(spec.pop("start", 0.0))
            length = float(spec.pop("length", 1.0 - start))
            if not (0 <= start < 1 and 0 < length <= 1 - start + 1e-9):
                raise ProfileError(f"profile {name}: job {call_name} start/length out of 0..1")
            job = _job(call_name, raw, spec, length * total_s, profile_dir)
            label = f"{call_name} ({role})" if role else call_name
            together.append(Job(label, call_name, job.config, start * total_s, role))
        every = parse_duration(str(bench.get("sample_every", "1s")))
        return Profile(name, description, True, tuple(together), sample_every_s=every)
    raise ProfileError(f'profile {name} has neither "call" nor a "bench" section')


def _job(
    call_name: str,
    shape: dict[str, Any],
    overrides: dict[str, Any],
    duration_s: float | None,
    profile_dir: Path = PROFILE_DIR,
) -> Job:
    call = read_file(call_name, profile_dir)
    call.pop("bench", None)
    if "call" not in call:
        raise ProfileError(f'{call_name!r} is not a call profile (it has no "call")')
    config = {**call, **shape, **overrides}
    config.pop("name", None)
    config.pop("duration", None)  # -z ignores "total"; -x (max-duration) keeps it as a bound
    if config.get("load-schedule") == "step":
        schedule = StepSchedule(
            int(config["load-start"]),
            int(config["load-step"]),
            int(config["load-end"]),
            parse_duration(str(config["load-step-duration"])),
        )
        config["max-duration"] = format_duration(len(schedule.rates) * schedule.step_s)
    elif duration_s is not None:
        config["max-duration"] = format_duration(duration_s)
    config.setdefault("max-duration", "10s")
    config.setdefault("duration-stop", "wait")
    service_of(str(config["call"]))
    parse_duration(str(config["max-duration"]))
    return Job(call_name, call_name, config)


def substitute(value: Any, values: dict[str, str | list[str]]) -> Any:
    """Fills ${NAME} placeholders in a ghz "data" value.

    A message that mentions a list-valued placeholder becomes one message per list item
    (ghz sends an array of messages round-robin).
    """
    if isinstance(value, dict):
        text = json.dumps(value)
        lists = [n for n, v in values.items() if isinstance(v, list) and "${" + n + "}" in text]
        if lists:
            (name,) = lists[:1]
            items = values[name]
            assert isinstance(items, list)
            return [substitute(value, {**values, name: item}) for item in items]
        return {key: substitute(item, values) for key, item in value.items()}
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            done = substitute(item, values)
            out.extend(done if isinstance(item, dict) and isinstance(done, list) else [done])
        return out
    if isinstance(value, str):
        for name, replacement in values.items():
            if isinstance(replacement, str):
                value = value.replace("${" + name + "}", replacement)
        return value
    return value


def placeholders(value: Any) -> set[str]:
    return set(re.findall(r"\$\{(\w+)\}", json.dumps(value)))


def skus_bought(data: Any) -> set[str]:
    """The SKUs a CreateOrder "data" value buys (one message or an array of them)."""
    messages = data if isinstance(data, list) else [data]
    return {
        str(item["sku"])
        for message in messages
        if isinstance(message, dict)
        for item in message.get("items", [])
    }


@dataclass
class Plan:
    """What a run needs prepared in the stack before its profiles start."""

    profiles: list[Profile] = field(default_factory=list)

    def orders_per_sku(self) -> dict[str, int]:
        """An upper bound of the units each SKU can lose in this run."""
        need: dict[str, int] = {}
        for profile in self.profiles:
            if profile.notification:
                plan = profile.notification
                orders = sum(math.ceil(r * plan.seconds_per_rate) for r in plan.rates)
                need[plan.sku] = need.get(plan.sku, 0) + orders + 20
            for job in profile.jobs:
                if not str(job.config["call"]).endswith("/CreateOrder"):
                    continue
                bound = int(job.config.get("total") or 200)
                if job.offered_rps:
                    bound = min(bound, math.ceil(job.offered_rps * job.duration_s) + 1)
                for sku in skus_bought(job.config.get("data")):
                    need[sku] = need.get(sku, 0) + bound
        return need

    def placeholders(self) -> set[str]:
        return {
            name
            for profile in self.profiles
            for job in profile.jobs
            for name in placeholders(job.config.get("data"))
        }
