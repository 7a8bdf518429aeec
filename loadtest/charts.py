"""PNG charts of a run (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from loadtest.results import Row


def step_chart(rows: Sequence[Row], p99_limits: dict[str, float | None], path: Path) -> None:
    """Latency percentiles against offered rate, one panel per call of a step profile."""
    fig, axes = plt.subplots(1, len(rows), figsize=(6 * len(rows), 4.5), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        rates = [s.rate for s in row.steps]
        for key, label in (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99")):
            values = [getattr(s, key) for s in row.steps]
            ax.plot(
                rates, [v if v is not None else float("nan") for v in values], "o-", label=label
            )
        limit = p99_limits.get(row.call)
        if limit is not None:
            ax.axhline(limit, color="red", linestyle="--", label=f"p99 SLO {limit:g} ms")
        if row.knee_rps is not None:
            ax.axvline(row.knee_rps, color="green", linestyle=":", label=f"knee {row.knee_rps:g}/s")
        ax.set(title=f"{row.profile}: {row.call}", xlabel="offered rate (req/s)", ylabel="ms")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def anchor_chart(rows: Sequence[Row], path: Path) -> None:
    """rps per endpoint beside the Python and Go anchors measured with the same settings."""
    names = [r.call for r in rows]
    series = [("endpoint", [r.rps for r in rows])]
    for anchor in ("python", "go"):
        if any(anchor in r.anchor_rps for r in rows):
            series.append((f"{anchor} anchor", [r.anchor_rps.get(anchor, 0.0) for r in rows]))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rows)), 4.5))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        ax.bar([x + i * width for x in range(len(rows))], values, width, label=label)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(rows))], names)
    ax.tick_params(axis="x", labelrotation=20)
    ax.set(title=f"{rows[0].profile}: rps against the anchors", ylabel="requests/s")
    ax.set_yscale("log")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
