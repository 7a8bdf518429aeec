"""Print a trace from Jaeger's HTTP API as a waterfall in the terminal, with its UI link.

    python -m shop_devstack trace <trace id | order id>     (make trace ID=...)

A 32-hex-digit argument is a trace id; anything else is looked up as an order id through
the `shop.order_id` attribute the orders service puts on its spans (every trace of that
order: create, cancel, reads).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

TRACE_ID = re.compile(r"^[0-9a-f]{16}([0-9a-f]{16})?$")


def jaeger_url() -> str:
    return os.environ.get(
        "JAEGER_URL", f"http://127.0.0.1:{os.environ.get('JAEGER_UI_PORT', '16686')}"
    )


def trace_url(trace_id: str, base: str | None = None) -> str:
    """The trace's page in the Jaeger web UI."""
    return f"{base or jaeger_url()}/trace/{trace_id}"


def order_search_url(order_id: str, base: str | None = None) -> str:
    """The Jaeger UI's search for every trace of an order."""
    tags = urllib.parse.quote(json.dumps({"shop.order_id": order_id}, separators=(",", ":")))
    return f"{base or jaeger_url()}/search?service=orders&tags={tags}"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def fetch_trace(trace_id: str, base: str | None = None) -> dict[str, Any] | None:
    try:
        data = _get(f"{base or jaeger_url()}/api/traces/{trace_id}")["data"]
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise
    return data[0] if data else None


def find_order_traces(order_id: str, base: str | None = None) -> list[dict[str, Any]]:
    now_us = int(time.time() * 1_000_000)
    query = urllib.parse.urlencode(
        {
            "service": "orders",
            "tags": json.dumps({"shop.order_id": order_id}),
            "start": now_us - 7 * 24 * 3600 * 1_000_000,
            "end": now_us,
            "limit": 50,
        }
    )
    found = _get(f"{base or jaeger_url()}/api/traces?{query}")["data"]
    # A search answers with the spans that matched; fetch each trace whole.
    traces = [t for t in (fetch_trace(f["traceID"], base) for f in found) if t is not None]
    return sorted(traces, key=lambda t: min(s["startTime"] for s in t["spans"]))


@dataclass
class Span:
    span_id: str
    service: str
    name: str
    start_us: int
    duration_us: int
    status: str
    parent_id: str | None
    children: list[Span] = field(default_factory=list)


def spans_of(trace: dict[str, Any]) -> dict[str, Span]:
    """The trace's spans by id, each knowing its parent (CHILD_OF) and children."""
    processes = trace["processes"]
    spans: dict[str, Span] = {}
    for raw in trace["spans"]:
        tags = {t["key"]: t["value"] for t in raw.get("tags", [])}
        status = str(tags.get("otel.status_code", "ERROR" if tags.get("error") else "OK"))
        if "rpc.grpc.status_code" in tags and tags["rpc.grpc.status_code"] != 0:
            status = f"grpc {tags['rpc.grpc.status_code']}"
        # Like Jaeger's UI: the CHILD_OF reference, else the first one. A Kafka process
        # span is the producer's child *and* links to it; Jaeger folds the two into one
        # FOLLOWS_FROM reference.
        references = sorted(raw.get("references", []), key=lambda r: r["refType"] != "CHILD_OF")
        parent = references[0]["spanID"] if references else None
        spans[raw["spanID"]] = Span(
            span_id=raw["spanID"],
            service=processes[raw["processID"]]["serviceName"],
            name=raw["operationName"],
            start_us=raw["startTime"],
            duration_us=raw["duration"],
            status=status,
            parent_id=parent,
        )
    for span in spans.values():
        if span.parent_id in spans:
            spans[span.parent_id].children.append(span)
    return spans


def waterfall(trace: dict[str, Any], width: int = 40) -> str:
    spans = spans_of(trace)
    roots = sorted(
        (s for s in spans.values() if s.parent_id not in spans), key=lambda s: s.start_us
    )
    begin = min(s.start_us for s in spans.values())
    end = max(s.start_us + s.duration_us for s in spans.values())
    total = max(end - begin, 1)
    lines = [
        f"trace {trace['traceID']}  {len(spans)} spans  {total / 1000:.1f} ms  "
        f"services: {', '.join(sorted({s.service for s in spans.values()}))}",
        f"{'offset ms':>10} {'dur ms':>9}  {'status':<8} {'service':<10} span",
    ]

    def walk(span: Span, depth: int) -> None:
        left = int((span.start_us - begin) / total * width)
        bar_len = max(1, int(span.duration_us / total * width))
        bar = " " * left + "█" * min(bar_len, width - left)
        lines.append(
            f"{(span.start_us - begin) / 1000:>10.2f} {span.duration_us / 1000:>9.2f}  "
            f"{span.status:<8} {span.service:<10} {'  ' * depth}{span.name}  |{bar:<{width}}|"
        )
        for child in sorted(span.children, key=lambda s: s.start_us):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return "\n".join(lines)


def show(identifier: str) -> int:
    identifier = identifier.strip().lower()
    if TRACE_ID.match(identifier):
        found = fetch_trace(identifier)
        traces = [found] if found else []
    else:
        traces = find_order_traces(identifier)
    if not traces:
        print(f"no trace found in Jaeger ({jaeger_url()}) for {identifier!r}")
        return 1
    print("\n\n".join(f"{waterfall(t)}\nin Jaeger: {trace_url(t['traceID'])}" for t in traces))
    return 0
