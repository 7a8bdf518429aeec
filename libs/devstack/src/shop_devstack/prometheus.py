"""The stack's Prometheus through its HTTP API: instant queries, exemplars, graph links."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    value: float


class Prometheus:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def _get(self, path: str, params: dict[str, str]) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=5) as response:
            return json.load(response)["data"]

    def query(self, expr: str, at: float) -> list[Series]:
        """The instant vector `expr` at time `at` (Unix seconds)."""
        result = self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})["result"]
        return [Series(r["metric"], float(r["value"][1])) for r in result]

    def exemplars(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        """The exemplars of the series `expr` selects, per series: seriesLabels, exemplars."""
        found: list[dict[str, Any]] = self._get(
            "/api/v1/query_exemplars", {"query": expr, "start": str(start), "end": str(end)}
        )
        return found

    def graph_url(
        self,
        exprs: list[str],
        *,
        range_input: str = "15m",
        end: str | None = None,
        exemplars: bool = False,
    ) -> str:
        """A link to the web UI's graph page with one panel per expression."""
        panels: dict[str, str] = {}
        for index, expr in enumerate(exprs):
            panels |= {f"g{index}.expr": expr, f"g{index}.tab": "0"}
            panels[f"g{index}.range_input"] = range_input
            if end:
                panels[f"g{index}.end_input"] = end
            if exemplars:
                panels[f"g{index}.show_exemplars"] = "1"
        return f"{self.url}/graph?{urllib.parse.urlencode(panels, safe=':')}"
