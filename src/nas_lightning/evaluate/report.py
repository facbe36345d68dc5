"""Search vs random: the summary table, its CSV/JSON files, a rich table and a strip plot."""

from __future__ import annotations

import csv
import json
import random
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FIELDS = ("name", "kind", "seed", "test_acc", "params_M", "macs_M", "latency_ms", "dir")


def per_genotype(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean test accuracy (over seeds) per genotype, best first."""
    names = list(dict.fromkeys(r["name"] for r in rows))
    out = []
    for name in names:
        mine = [r for r in rows if r["name"] == name]
        out.append(
            {
                "name": name,
                "kind": mine[0]["kind"],
                "test_acc": statistics.fmean(r["test_acc"] for r in mine),
                "params_M": mine[0]["params_M"],
                "macs_M": mine[0]["macs_M"],
                "latency_ms": statistics.median(r["latency_ms"] for r in mine),
                "seeds": len(mine),
            }
        )
    return sorted(out, key=lambda g: -g["test_acc"])


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Random mean ± std, each searched genotype's accuracy and rank among all (1 = best)."""
    genotypes = per_genotype(rows)
    random_acc = [g["test_acc"] for g in genotypes if g["kind"] == "random"]
    searched = []
    for g in genotypes:
        if g["kind"] == "searched":
            better = sum(r > g["test_acc"] for r in random_acc)
            searched.append({**g, "rank": better + 1, "of": len(random_acc) + 1})
    return {
        "random": {
            "n": len(random_acc),
            "mean": statistics.fmean(random_acc) if random_acc else None,
            "std": statistics.stdev(random_acc) if len(random_acc) > 1 else 0.0,
            "min": min(random_acc, default=None),
            "max": max(random_acc, default=None),
        },
        "searched": searched,
        "genotypes": genotypes,
    }


def write_tables(rows: list[dict[str, Any]], summary: dict[str, Any], out: Path) -> None:
    """``runs.csv`` (one row per retrain) and ``summary.json``."""
    with open(out / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps({**summary, "runs": rows}, indent=2) + "\n")


def print_table(summary: dict[str, Any]) -> str:
    """The summary as a rich table (printed); returns its plain text."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="search vs random (test accuracy)")
    for col in ("genotype", "test acc", "rank", "params (M)", "MACs (M)", "latency (ms)"):
        table.add_column(col, justify="left" if col == "genotype" else "right")
    rnd = summary["random"]
    if rnd["n"]:
        table.add_row(
            f"random (n={rnd['n']})",
            f"{rnd['mean']:.4f} ± {rnd['std']:.4f}",
            "",
            "",
            "",
            "",
        )
    for g in summary["searched"]:
        table.add_row(
            g["name"],
            f"{g['test_acc']:.4f}",
            f"{g['rank']} / {g['of']}",
            f"{g['params_M']:.3f}",
            f"{g['macs_M']:.1f}",
            f"{g['latency_ms']:.3f}",
        )
    console = Console(record=True, width=100)
    console.print(table)
    return console.export_text()


def strip_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Test accuracy per genotype: random ones as jittered dots, searched ones as red stars."""
    genotypes = per_genotype(rows)
    fig, ax = plt.subplots(figsize=(4.5, 4.0))
    rnd = [g for g in genotypes if g["kind"] == "random"]
    jitter = random.Random(0)  # fixed horizontal jitter: x carries no meaning
    xs = [1.0 + jitter.uniform(-0.12, 0.12) for _ in rnd]
    ax.scatter(xs, [g["test_acc"] for g in rnd], color="#4c72b0", label="random", zorder=2)
    for g in genotypes:
        if g["kind"] == "searched":
            ax.scatter([1.0], [g["test_acc"]], marker="*", s=220, color="#c44e52", zorder=3)
            ax.annotate(
                g["name"],
                (1.0, g["test_acc"]),
                xytext=(10, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
    ax.scatter([], [], marker="*", s=120, color="#c44e52", label="searched")
    ax.set_xlim(0.5, 1.5)
    ax.set_xticks([])
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.set_title("searched vs random genotypes")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
