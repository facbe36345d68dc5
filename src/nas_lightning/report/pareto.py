"""The accuracy-vs-latency Pareto front of a sweep and its plot.

Only completed jobs with both numbers are points. When every such job was retrained
(``result.json``), the axes are its test accuracy and measured latency; otherwise the search's
final ``val/acc`` and ``arch/expected_latency_ms`` (mixing the two would compare a measured
latency with a modelled one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

AXES = {
    "retrain": ("test_acc", "latency_ms", "test accuracy (retrained)", "measured latency (ms)"),
    "search": ("val_acc", "expected_latency_ms", "val/acc (search)", "expected latency (ms)"),
}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated ``(accuracy, latency)`` points: no other point has accuracy
    ≥ and latency ≤ with one of them strictly better. Sorted by latency."""
    front = []
    for i, (acc, lat) in enumerate(points):
        dominated = any(
            a >= acc and t <= lat and (a > acc or t < lat)
            for j, (a, t) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][1], -points[i][0]))


def choose_axes(records: list[dict[str, Any]]) -> str:
    """``retrain`` when every completed job has a test accuracy and a measured latency."""
    done = [r for r in records if r["status"] == "completed"]
    retrained = [r for r in done if r["test_acc"] is not None and r["latency_ms"] is not None]
    return "retrain" if done and len(retrained) == len(done) else "search"


def mark_front(records: list[dict[str, Any]]) -> str:
    """Set ``pareto`` on every record (``True``/``False``; ``None``: not a point) and return the
    axes used (``retrain`` or ``search``)."""
    axes = choose_axes(records)
    acc_key, lat_key = AXES[axes][:2]
    points = [
        r
        for r in records
        if r["status"] == "completed" and r[acc_key] is not None and r[lat_key] is not None
    ]
    on_front = set(pareto_front([(r[acc_key], r[lat_key]) for r in points]))
    for r in records:
        r["pareto"] = None
    for i, r in enumerate(points):
        r["pareto"] = i in on_front
    return axes


def plot_front(records: list[dict[str, Any]], axes: str, path: Path, title: str = "") -> Path:
    """Every point (grey), the front (red, joined by its staircase), each labelled with the job's
    swept overrides. ``mark_front`` first."""
    acc_key, lat_key, acc_label, lat_label = AXES[axes]
    points = [r for r in records if r["pareto"] is not None]
    front = sorted((r for r in points if r["pareto"]), key=lambda r: r[lat_key])
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    rest = [r for r in points if not r["pareto"]]
    ax.scatter(
        [r[lat_key] for r in rest], [r[acc_key] for r in rest], color="#9a9a9a", label="dominated"
    )
    if front:
        ax.step(
            [r[lat_key] for r in front],
            [r[acc_key] for r in front],
            where="post",
            color="#c44e52",
            linewidth=1.5,
        )
        ax.scatter(
            [r[lat_key] for r in front],
            [r[acc_key] for r in front],
            color="#c44e52",
            s=60,
            zorder=3,
            label="Pareto front",
        )
    for r in points:
        ax.annotate(
            r["varying"] or r["job"],
            (r[lat_key], r[acc_key]),
            xytext=(5, 4),
            textcoords="offset points",
            fontsize=7,
        )
    ax.set_xlabel(lat_label)
    ax.set_ylabel(acc_label)
    failed = sum(r["status"] == "failed" for r in records)
    ax.set_title(title + (f" ({failed} failed job(s) not shown)" if failed else ""), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
