"""``python -m nas_lightning.report <multirun dir> [--out DIR]``.

Writes ``report.csv`` and ``pareto.png`` (into the multirun directory unless ``--out``) and
prints the table. Exit 1 with one line when the directory holds no job.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas_lightning.report import collect, mark_front, plot_front, render_table, write_csv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nas_lightning.report",
        description="Collect a multirun's jobs into report.csv, a table and pareto.png.",
    )
    parser.add_argument("sweep_dir", type=Path, help="e.g. outputs/search/multiruns/<time>")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: it)")
    args = parser.parse_args(argv)
    try:
        records = collect(args.sweep_dir)
    except FileNotFoundError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    out = args.out or args.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    axes = mark_front(records)
    failed = sum(r["status"] == "failed" for r in records)
    title = f"{args.sweep_dir}: {len(records)} job(s), {failed} failed"
    render_table(records, axes, title)
    csv_path = write_csv(records, out / "report.csv")
    png_path = plot_front(records, axes, out / "pareto.png", title=str(args.sweep_dir.name))
    print(f"Wrote {csv_path} and {png_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
