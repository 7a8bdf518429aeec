"""`make bench`: run profiles against the running stack, beside anchors, and judge them."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shop_chassis.settings import EVENT_LOOPS
from shop_devstack.procs import StackError as PortsError
from shop_devstack.stack import Ports, client_tls_from_env

from loadtest import charts, ghz, notification, profiles, report, slo, telemetry_tax
from loadtest.anchor import Anchor, AnchorError, anchor_loop, anchors
from loadtest.profiles import Job, Plan, Profile, ProfileError
from loadtest.results import Row, knee, recovery_seconds, step_table
from loadtest.sampler import Sampler
from loadtest.stack import StackError, Target, check_health, placeholder_values, restock
from loadtest.telemetry_tax import TaxReport

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = Path(__file__).resolve().parent / "proto"


@dataclass
class Context:
    run_dir: Path
    target: Target
    ghz_bin: Path
    ghz_html: Path
    anchors: list[Anchor]
    slo: slo.Slo
    values: dict[str, str | list[str]] = field(default_factory=dict)
    sku: str = "SOCKS-3P"  # what the orders the bench prepares buy
    # Anchor measurements by their ghz settings: the same settings are measured once a run.
    anchor_cache: dict[str, list[list[ghz.Outcome]]] = field(default_factory=dict)
    taxes: dict[str, TaxReport] = field(default_factory=dict)  # by telemetry_tax profile
    anchor_loop: str = "uvloop"  # the Python anchor's event loop


def _stem(ctx: Context, *parts: str) -> Path:
    return ctx.run_dir / ".".join(
        p.replace(" ", "_").replace("(", "").replace(")", "") for p in parts
    )


def _with_data(job: Job, values: dict[str, str | list[str]]) -> Job:
    config = dict(job.config)
    if "data" in config:
        config["data"] = profiles.substitute(config["data"], values)
    return Job(job.label, job.call_profile, config, job.start_s, job.role)


async def _run_together(
    ctx: Context, jobs: Sequence[Job], anchor: Anchor | None, stems: Sequence[Path]
) -> tuple[list[ghz.Outcome], list[float]]:
    """Runs jobs at once (each after its start delay) against the stack, or their anchor
    variants against `anchor`; returns outcomes and launch times."""
    launched = [0.0] * len(jobs)

    async def one(index: int, job: Job) -> ghz.Outcome:
        await asyncio.sleep(job.start_s)
        launched[index] = time.time()
        if anchor is None:
            address = ctx.target.grpc[job.service]
            return await ghz.run_job(job, address, stems[index], ctx.ghz_bin, ctx.target.tls)
        return await ghz.run(
            job.anchor_config(PROTO_DIR),
            anchor.address,
            stems[index],
            ctx.ghz_bin,
            {"OK"},
            anchor.tls,
        )

    outcomes = await asyncio.gather(*(one(i, job) for i, job in enumerate(jobs)))
    await asyncio.gather(*(ghz.render_html(ctx.ghz_html, stem) for stem in stems))
    return list(outcomes), launched


async def _anchor_outcomes(
    ctx: Context, profile: Profile, jobs: Sequence[Job]
) -> dict[str, list[ghz.Outcome]]:
    key = json.dumps([[j.anchor_config(PROTO_DIR), j.start_s] for j in jobs], sort_keys=True)
    if key not in ctx.anchor_cache:
        measured = []
        for anchor in ctx.anchors:
            loop = f" on {ctx.anchor_loop}" if anchor.name == "python" else ""
            print(
                f"[anchor] {anchor.name}{loop}: the same settings against Health/Check", flush=True
            )
            stems = [_stem(ctx, profile.name, j.label, f"anchor-{anchor.name}") for j in jobs]
            outcomes, _ = await _run_together(ctx, jobs, anchor, stems)
            measured.append(outcomes)
        ctx.anchor_cache[key] = measured
    return {a.name: o for a, o in zip(ctx.anchors, ctx.anchor_cache[key], strict=True)}


def _row(profile: Profile, job: Job, outcome: ghz.Outcome, stem: Path) -> Row:
    pct = outcome.percentiles()
    return Row(
        profile=profile.name,
        call=job.label,
        method=str(job.config["call"]),
        requests=outcome.requests,
        errors=outcome.errors,
        rps=outcome.rps,
        offered_rps=job.offered_rps,
        p50_ms=pct["p50_ms"],
        p90_ms=pct["p90_ms"],
        p99_ms=pct["p99_ms"],
        p999_ms=pct["p999_ms"],
        status_codes=outcome.statuses,
        problem=outcome.problem,
        top_errors=outcome.top_errors,
        report=f"{stem.name}.json",
    )


async def _measure(
    ctx: Context, profile: Profile, jobs: Sequence[Job]
) -> tuple[list[Row], Sampler]:
    """One measured window: the jobs at once (one job when the profile runs them in turn)."""
    stems = [_stem(ctx, profile.name, job.label) for job in jobs]
    print(
        f"[{profile.name}] "
        + ", ".join(f"{j.label} ({j.config['call']})" for j in jobs)
        + f" for {max(j.start_s + j.duration_s for j in jobs):g}s",
        flush=True,
    )
    async with Sampler(ctx.target.metrics_ports, profile.sample_every_s) as sampler:
        outcomes, launched = await _run_together(ctx, jobs, None, stems)
    rows = [_row(profile, j, o, s) for j, o, s in zip(jobs, outcomes, stems, strict=True)]
    cpu = sampler.cpu_ms_per_request(sum(o.requests for o in outcomes))
    for row in rows:
        row.cpu_ms_per_request = cpu
        row.peak_rss_mb = sampler.peak_rss_mb()
    for name, anchor_outcomes in (await _anchor_outcomes(ctx, profile, jobs)).items():
        for row, outcome in zip(rows, anchor_outcomes, strict=True):
            row.anchor_rps[name] = outcome.rps
            row.anchor_p99_ms[name] = outcome.percentiles()["p99_ms"]
    for job, row, outcome in zip(jobs, rows, outcomes, strict=True):
        schedule = job.step
        if schedule is not None and outcome.calls:
            row.steps = step_table(outcome.calls, schedule, ghz.first_start(outcome.calls))
            limit = ctx.slo.for_call(profile.name, row.call).p99_ms
            row.knee_rps = knee(row.steps, limit) if limit is not None else None
    if profile.is_spike:
        base = next(i for i, j in enumerate(jobs) if j.role == "base")
        burst = next(i for i, j in enumerate(jobs) if j.role == "burst")
        burst_start = launched[burst]
        rows[base].recovery_s = recovery_seconds(
            outcomes[base].calls, burst_start, burst_start + jobs[burst].duration_s
        )
    return rows, sampler


async def _notification(ctx: Context, profile: Profile) -> list[Row]:
    assert profile.notification is not None
    async with Sampler(ctx.target.metrics_ports, profile.sample_every_s) as sampler:
        measured = await notification.measure(ctx.target, profile.notification)
    placed = sum(r.placed for r in measured)
    return notification_rows(
        profile.name, measured, sampler.cpu_ms_per_request(placed), sampler.peak_rss_mb()
    )


def notification_rows(
    profile: str,
    measured: list[notification.RateResult],
    cpu: dict[str, float | None],
    peak_rss_mb: dict[str, float | None],
) -> list[Row]:
    """Two rows per rate: order -> notification, and the CreateOrder calls themselves, so the
    report shows whether CreateOrder kept its own SLO at that rate ("the highest rate
    CreateOrder sustains", issue 7's fallback for the notification target)."""
    rows = []
    for result in measured:
        for call, method, latencies, errors, top_errors in (
            (
                f"order->notification @{result.target_rate:g}/s",
                "CreateOrder returned -> StreamNotifications arrival",
                result.latencies_ms,
                result.errors,
                [f"{result.missing} notification(s) did not arrive"] if result.missing else [],
            ),
            (
                f"create_order (at {result.target_rate:g}/s)",
                "CreateOrder, as placed for the notifications above",
                result.create_latencies_ms,
                sum(result.failures.values()),
                [],
            ),
        ):
            pct = ghz.latency_percentiles(latencies)
            rows.append(
                Row(
                    profile=profile,
                    call=call,
                    method=method,
                    requests=result.placed,
                    errors=errors,
                    rps=result.achieved_rate,
                    offered_rps=result.target_rate,
                    p50_ms=pct["p50_ms"],
                    p90_ms=pct["p90_ms"],
                    p99_ms=pct["p99_ms"],
                    p999_ms=pct["p999_ms"],
                    status_codes=dict(result.failures),
                    cpu_ms_per_request=cpu,
                    peak_rss_mb=peak_rss_mb,
                    problem=result.problem,
                    top_errors=top_errors,
                )
            )
    return rows


async def _telemetry_tax(ctx: Context, profile: Profile) -> list[Row]:
    """The profile's job against the stack's orders (tracing on) and a second orders process
    with tracing off, in alternating rounds; the tax goes to ctx.taxes."""
    (job,) = profile.jobs
    method = str(job.config["call"])
    rows: list[Row] = []
    measured: dict[tuple[int, bool], ghz.Outcome] = {}
    try:
        async with telemetry_tax.untraced_orders(ctx.target, ctx.run_dir, ROOT) as untraced:
            order_id = await telemetry_tax.prepare_order(
                untraced.address,
                ctx.sku,
                f"bench-untraced-{ctx.run_dir.name[-4:]}",
                ctx.target.tls,
            )
            # tracing on? -> (the job, the orders address, the order it reads, /metrics ports)
            sides = {
                True: (
                    _with_data(job, ctx.values),
                    ctx.target.grpc["orders"],
                    str(ctx.values["ORDER_ID"]),
                    ctx.target.metrics_ports,
                ),
                False: (
                    _with_data(job, {**ctx.values, "ORDER_ID": order_id}),
                    untraced.address,
                    order_id,
                    {**ctx.target.metrics_ports, "orders": untraced.metrics_port},
                ),
            }
            for _, address, read, _ in sides.values():
                await telemetry_tax.warm_up(address, read, ctx.target.tls)
            for number, tracing in telemetry_tax.run_order(profile.telemetry_tax_rounds):
                side_job, address, _, metrics_ports = sides[tracing]
                side = "on" if tracing else "off"
                label = f"{job.label} (tracing {side}) #{number}"
                print(
                    f"[{profile.name}] round {number}: {method} with tracing {side} on {address}"
                    f" for {side_job.duration_s:g}s",
                    flush=True,
                )
                stem = _stem(ctx, profile.name, job.label, f"tracing-{side}", f"round{number}")
                async with Sampler(metrics_ports, profile.sample_every_s) as sampler:
                    outcome = await ghz.run_job(
                        side_job, address, stem, ctx.ghz_bin, ctx.target.tls
                    )
                await ghz.render_html(ctx.ghz_html, stem)
                measured[(number, tracing)] = outcome
                labelled = Job(label, job.call_profile, side_job.config)
                row = _row(profile, labelled, outcome, stem)
                row.tracing, row.round = tracing, number
                row.cpu_ms_per_request = sampler.cpu_ms_per_request(outcome.requests)
                row.peak_rss_mb = sampler.peak_rss_mb()
                rows.append(row)
                await asyncio.sleep(1)  # let the previous run's stragglers finish
    except StackError as exc:
        print(f"[{profile.name}] FAILED: {exc}", file=sys.stderr, flush=True)
        ctx.taxes[profile.name] = TaxReport(job.label, method, problem=str(exc))
        failed = Row(profile.name, f"{job.label} (not measured)", method, problem=str(exc))
        return [*rows, failed]
    ctx.taxes[profile.name] = TaxReport.of(job.label, method, measured)
    for name, (outcome,) in (await _anchor_outcomes(ctx, profile, [job])).items():
        for row in rows:
            row.anchor_rps[name] = outcome.rps
            row.anchor_p99_ms[name] = outcome.percentiles()["p99_ms"]
    return rows


async def run_profile(
    ctx: Context, profile: Profile
) -> tuple[list[Row], dict[str, dict[str, list[float]]]]:
    """The rows of one profile; for jobs run at once, each service's sampled figures too."""
    if profile.notification is not None:
        return await _notification(ctx, profile), {}
    if profile.telemetry_tax_rounds:
        return await _telemetry_tax(ctx, profile), {}
    jobs = [_with_data(job, ctx.values) for job in profile.jobs]
    if profile.together:
        rows, sampler = await _measure(ctx, profile, jobs)
        series = {
            service: {
                what: [round(v, 1) for _, v in sampler.series(service, what)]
                for what in ("rss_bytes", "outbox_backlog", "consumer_lag")
            }
            for service in ctx.target.metrics_ports
        }
        return rows, series
    rows = []
    for job in jobs:
        rows += (await _measure(ctx, profile, [job]))[0]
        await asyncio.sleep(1)  # let the previous run's stragglers finish
    return rows, {}


def _charts(ctx: Context, rows: Sequence[Row]) -> list[str]:
    made = []
    by_profile: dict[str, list[Row]] = {}
    for row in rows:
        by_profile.setdefault(row.profile, []).append(row)
    for name, group in by_profile.items():
        stepped = [r for r in group if r.steps]
        if stepped:
            limits = {r.call: ctx.slo.for_call(name, r.call).p99_ms for r in stepped}
            charts.step_chart(stepped, limits, ctx.run_dir / f"{name}-latency-vs-rate.png")
            made.append(f"{name}-latency-vs-rate.png")
        anchored = [r for r in group if r.anchor_rps and r.offered_rps is None]
        if anchored:
            charts.anchor_chart(anchored, ctx.run_dir / f"{name}-rps-vs-anchor.png")
            made.append(f"{name}-rps-vs-anchor.png")
    return made


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    names = profiles.available()
    parser = argparse.ArgumentParser(
        prog="make bench ARGS=...",
        description="Load-test the running stack (`make run`) with ghz beside anchors; judge"
        " the results against SLOs. See loadtest/README.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--profiles",
        nargs="+",
        default=list(profiles.DEFAULT_PROFILES),
        metavar="NAME",
        help=f"profiles to run, space- or comma-separated, from {names}",
    )
    parser.add_argument(
        "--duration",
        help="replaces the length of constant-rate profiles (10, 10s, 1m); a step profile's"
        " length comes from its schedule, a notification profile's is per rate",
    )
    parser.add_argument("--slo", type=Path, default=slo.DEFAULT_SLO, help="SLO file (TOML)")
    parser.add_argument("--sku", default="SOCKS-3P", help="SKU of the orders the bench prepares")
    tools = ROOT / ".tools" / "bin"
    parser.add_argument("--ghz", type=Path, default=tools / "ghz", help="ghz binary")
    parser.add_argument("--ghz-html", type=Path, default=tools / "ghz-html", help="ghz-html")
    parser.add_argument(
        "--go-anchor", type=Path, default=tools / "health-anchor", help="the Go health anchor"
    )
    parser.add_argument(
        "--no-go-anchor", action="store_true", help="measure the Python anchor only"
    )
    parser.add_argument(
        "--anchor-loop",
        choices=sorted(EVENT_LOOPS),
        default=anchor_loop(),
        help="the Python anchor's event loop (default: the services', SHOP_EVENT_LOOP or uvloop)",
    )
    parser.add_argument("--out-dir", type=Path, default=ROOT / "var" / "bench", help="run folders")
    args = parser.parse_args(argv)
    args.profiles = list(dict.fromkeys(n for item in args.profiles for n in item.split(",") if n))
    if unknown := sorted(set(args.profiles) - set(names)):
        parser.error(f"unknown profile(s) {unknown}; choose from {names}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        duration = profiles.parse_duration(args.duration) if args.duration else None
        chosen = [profiles.load(name, duration) for name in args.profiles]
        rules = slo.load(args.slo, profiles.available())
    except (ProfileError, slo.SloError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for tool in (args.ghz, args.ghz_html, *([] if args.no_go_anchor else [args.go_anchor])):
        if not tool.exists():
            print(
                f"error: {tool} is missing: run `deploy/bootstrap.sh ghz benchtools`",
                file=sys.stderr,
            )
            return 2
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:4]
    run_dir: Path = args.out_dir.absolute() / run_id
    run_dir.mkdir(parents=True)
    try:
        return asyncio.run(run(args, chosen, rules, run_dir))
    except (StackError, AnchorError, PortsError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


async def run(
    args: argparse.Namespace, chosen: list[Profile], rules: slo.Slo, run_dir: Path
) -> int:
    target = Target.from_ports(Ports.from_env(), client_tls_from_env())
    await check_health(target)
    print("[health] orders, inventory and notifier are SERVING")
    run_id = run_dir.name
    plan = Plan(chosen)
    await restock(target, plan.orders_per_sku())
    values = await placeholder_values(target, plan.placeholders(), args.sku, run_id[-4:])
    meta = {
        "started": ghz.utc_now(),
        "profiles": [p.name for p in chosen],
        "slo_file": str(args.slo),
        "cpus": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "anchor_loop": args.anchor_loop,
    }
    rows: list[Row] = []
    sampled: dict[str, dict[str, dict[str, list[float]]]] = {}
    verdicts: list[slo.Verdict] = []
    anchor_certs = run_dir / "anchor-certs" if target.tls else None
    async with anchors(
        None if args.no_go_anchor else args.go_anchor, anchor_certs, args.anchor_loop
    ) as started:
        ctx = Context(
            run_dir,
            target,
            args.ghz,
            args.ghz_html,
            started,
            rules,
            values,
            sku=args.sku,
            anchor_loop=args.anchor_loop,
        )
        for profile in chosen:
            profile_rows, series = await run_profile(ctx, profile)
            rows += profile_rows
            for row in profile_rows:
                thresholds = rules.for_call(profile.name, row.call)
                verdicts += slo.evaluate_row(row, thresholds, profile.is_step)
            if series:
                sampled[profile.name] = series
                verdicts += slo.evaluate_soak(
                    profile.name, rules.for_call(profile.name, ""), series
                )
            if tax := ctx.taxes.get(profile.name):
                thresholds = rules.for_call(profile.name, tax.call)
                verdicts += slo.evaluate_tax(
                    profile.name, tax.call, thresholds, tax.tax, tax.problem
                )
    made = _charts(ctx, rows)
    taxes = {name: tax.to_json() for name, tax in ctx.taxes.items()}
    data = report.summary(run_id, meta, rows, verdicts, sampled, taxes)
    report.write(run_dir, data, made)
    print()
    print("\n".join(report.results_table(rows)))
    print()
    print("\n".join(report.anchors_table(rows)))
    print()
    if taxes:
        print("\n".join(report.tax_table(taxes)))
        print()
    print("\n".join(report.verdict_table(verdicts)))
    passed = data["passed"]
    print(f"\nreports in {run_dir}/ (var/bench/latest); SLOs {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1
