"""The sweep report as a CSV file and a rich table (failed jobs marked, front starred)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

COLUMNS = (
    "job",
    "status",
    "varying",
    "val_acc",
    "expected_latency_ms",
    "test_acc",
    "latency_ms",
    "params_M",
    "macs_M",
    "pareto",
    "error",
    "genotype",
    "dir",
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_csv(records: list[dict[str, Any]], path: Path) -> Path:
    """One row per job: ``COLUMNS``, then every final metric (``metric:<key>``) of any job."""
    keys = sorted({k for r in records for k in r["metrics"]})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*COLUMNS, *(f"metric:{k}" for k in keys)])
        for r in records:
            row = [_cell(r.get(c)) for c in COLUMNS]
            writer.writerow(row + [_cell(r["metrics"].get(k)) for k in keys])
    return path


def render_table(records: list[dict[str, Any]], axes: str, title: str, width: int = 140) -> str:
    """Print the rich table and return its plain text."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    shown = [
        ("job", "job"),
        ("status", "status"),
        ("varying", "swept overrides"),
        ("val_acc", "val/acc"),
        ("expected_latency_ms", "E\\[lat] ms"),
    ]
    if any(r["test_acc"] is not None for r in records):
        shown += [("test_acc", "test acc"), ("latency_ms", "latency ms")]
    shown += [("pareto", f"front ({axes})"), ("genotype", "genotype / error")]
    for key, label in shown:
        table.add_column(
            label, overflow="fold", justify="right" if key.endswith(("acc", "ms")) else "left"
        )
    for r in records:
        cells = []
        for key, _ in shown:
            if key == "pareto":
                cells.append("★" if r["pareto"] else "")
            elif key == "genotype":
                cells.append(r["error"] if r["status"] == "failed" else r["genotype"])
            elif key == "status" and r["status"] == "failed":
                cells.append("[bold red]FAILED[/]")
            elif isinstance(r[key], float):
                cells.append(f"{r[key]:.4f}" if key.endswith("acc") else f"{r[key]:.4g}")
            else:
                cells.append(_cell(r[key]))
        table.add_row(*cells)
    console = Console(record=True, width=width)
    console.print(table)
    return console.export_text()
