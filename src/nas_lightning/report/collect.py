"""One record per job of a multirun directory, read from the files every run leaves.

A job directory is any directory under the sweep holding ``status.json`` or ``.hydra/`` (not
``.submitit/``). From it:

- ``status.json``: ``completed`` / ``failed`` / ``interrupted`` / ``running`` and the error line
  (no file: ``unknown``);
- ``csv/metrics.csv``: the **final** value of every metric — the last non-empty value of each
  column, i.e. the last epoch's (the genotype on disk is the last epoch's too, not the best);
- ``genotype.json``: the genotype as text;
- ``result.json`` of a retrain (``task=retrain``), or ``retrain/result.json`` of a search
  followed by its retrain (``task=search_retrain``): test accuracy, measured latency, size;
- ``.hydra/overrides.yaml``: the job's overrides; ``varying`` keeps those that differ between
  jobs (the swept values).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nas_lightning.genotype import load_genotype

LATENCY_KEY = "arch/expected_latency_ms"
RESULT_KEYS = ("test_acc", "latency_ms", "params_M", "macs_M")


def final_metrics(path: Path) -> dict[str, float]:
    """The last non-empty value of every column of a Lightning ``metrics.csv``."""
    if not path.is_file():
        return {}
    out: dict[str, float] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key and value not in (None, ""):
                    try:
                        out[key] = float(value)
                    except ValueError:
                        continue
    return out


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def _genotype_text(path: Path) -> str:
    if not path.is_file():
        return ""
    try:
        return str(load_genotype(path))
    except Exception as exc:  # a broken file is reported, not fatal for the whole report
        return f"unreadable: {exc}"


def _overrides(job: Path) -> list[str]:
    path = job / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.to_container(OmegaConf.load(path))] if path.is_file() else []


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job directories of a sweep, in job order (``2`` before ``10``)."""
    found = {
        p.parent
        for pattern in ("status.json", ".hydra")
        for p in sweep_dir.rglob(pattern)
        if ".submitit" not in p.parts and p.parent != sweep_dir
    }
    natural = [[int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))] for p in found]
    return [p for _, p in sorted(zip(natural, found, strict=True), key=lambda x: x[0])]


def job_record(job: Path, sweep_dir: Path) -> dict[str, Any]:
    status = _json(job / "status.json") or {}
    metrics = final_metrics(job / "csv" / "metrics.csv")
    result = _json(job / "result.json") or _json(job / "retrain" / "result.json") or {}
    record: dict[str, Any] = {
        "job": str(job.relative_to(sweep_dir)),
        "status": status.get("status", "unknown"),
        "error": status.get("error") or "",
        "overrides": _overrides(job),
        "val_acc": metrics.get("val/acc"),
        "expected_latency_ms": metrics.get(LATENCY_KEY),
        "genotype": _genotype_text(job / "genotype.json"),
        "metrics": metrics,
        "dir": str(job),
    }
    for key in RESULT_KEYS:
        value = result.get(key)
        record[key] = float(value) if isinstance(value, int | float) else None
    return record


def collect(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Records of every job under ``sweep_dir``; ``varying`` = the overrides that differ."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"multirun directory {root} does not exist")
    records = [job_record(job, root) for job in job_dirs(root)]
    if not records:
        raise FileNotFoundError(
            f"no job directories (with status.json or .hydra/) under {root}; give a multirun "
            "directory such as outputs/search/multiruns/<date>_<time>"
        )
    shared = set.intersection(*(set(r["overrides"]) for r in records))
    for r in records:
        r["varying"] = " ".join(o for o in r["overrides"] if o not in shared)
    return records
