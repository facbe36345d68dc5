"""``python -m nas_lightning.report <multirun dir>``: every job's final metrics, genotype,
expected latency, status and (if retrained) test accuracy and measured latency, as a CSV, a
rich table and an accuracy-vs-latency Pareto plot."""

from nas_lightning.report.collect import collect, final_metrics
from nas_lightning.report.pareto import mark_front, pareto_front, plot_front
from nas_lightning.report.table import render_table, write_csv

__all__ = [
    "collect",
    "final_metrics",
    "mark_front",
    "pareto_front",
    "plot_front",
    "render_table",
    "write_csv",
]
