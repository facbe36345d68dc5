"""Where a resume comes from and where it writes.

``ckpt_path=last`` means: the newest ``checkpoints/last.ckpt`` of a run of the same task whose
config equals this one, except for the fields a resume may legitimately change
(:data:`RESUMABLE`, e.g. ``trainer.max_epochs``). A resume continues in the checkpoint's run
directory, appending to its history; :func:`trim_history` first drops the history lines of
epochs the checkpoint does not contain (written after it, by a run that was then killed).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nas_lightning.runtime.errors import RunError

# Config fields a resume may change: the horizon, where/how things are shown and stored.
RESUMABLE = (
    "ckpt_path",
    "paths",
    "logger",
    "callbacks",
    "optimized_metric",
    "trainer.max_epochs",
    "trainer.min_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.accelerator",
    "trainer.devices",
    "dataset.num_workers",
    "dataset.pin_memory",
    "dataset.data_dir",
)
RUN_PATTERNS = ("runs/*/checkpoints/last.ckpt", "multiruns/*/*/checkpoints/last.ckpt")


class ResumeError(RunError):
    """No checkpoint to resume from, or one that cannot be resumed here."""


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists are leaves)."""
    if not isinstance(node, Mapping):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _resumable(key: str, ignore: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in ignore)


def config_diff(
    old: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str] = RESUMABLE
) -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` of every differing field outside ``ignore``; class
    targets first (a different algorithm or space explains everything else)."""
    a, b, ignore = flatten(old), flatten(new), tuple(ignore)
    keys = sorted(k for k in a.keys() | b.keys() if not _resumable(k, ignore))
    diff = [(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]
    return sorted(diff, key=lambda d: not d[0].endswith("_target_"))


def describe_diff(diff: list[tuple[str, Any, Any]], limit: int = 3) -> str:
    shown = [f"{k}: {o!r} in the checkpoint's run, {n!r} now" for k, o, n in diff[:limit]]
    more = f" and {len(diff) - limit} more" if len(diff) > limit else ""
    return "; ".join(shown) + more


def run_dir_of(ckpt: str | Path) -> Path | None:
    """The run directory holding ``<run>/checkpoints/<file>.ckpt``, if it is one."""
    path = Path(ckpt).resolve()
    run = path.parent.parent
    if path.parent.name == "checkpoints" and (run / ".hydra" / "config.yaml").is_file():
        return run
    return None


def run_config(run_dir: Path) -> dict[str, Any] | None:
    """The composed config a run directory recorded (``.hydra/config.yaml``)."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # type: ignore[return-value]
    except Exception:  # an unreadable record is no match, not a crash
        return None


def find_last_checkpoint(
    task_dir: Path, config: Mapping[str, Any], extra_run_dirs: Iterable[Path] = ()
) -> Path:
    """The newest ``last.ckpt`` under ``task_dir`` (runs and multirun jobs) or in
    ``extra_run_dirs`` whose run used the same config; a clear error naming where it looked."""
    candidates = {p.resolve() for pattern in RUN_PATTERNS for p in task_dir.glob(pattern)}
    candidates |= {
        (d / "checkpoints" / "last.ckpt").resolve()
        for d in extra_run_dirs
        if (d / "checkpoints" / "last.ckpt").is_file()
    }
    matching, nearest = [], None
    for ckpt in candidates:
        recorded = run_config(ckpt.parent.parent)
        if recorded is None:
            continue
        diff = config_diff(recorded, config)
        if not diff:
            matching.append(ckpt)
        elif nearest is None or len(diff) < len(nearest[1]):
            nearest = (ckpt, diff)
    if matching:
        return max(matching, key=lambda p: p.stat().st_mtime)
    where = f"{task_dir}/{{{','.join(RUN_PATTERNS)}}}"
    if not candidates:
        found = "found no last.ckpt there"
    else:
        found = f"found {len(candidates)} last.ckpt, none with this config"
        if nearest:
            found += f" (nearest, {nearest[0].parent.parent}: {describe_diff(nearest[1])})"
    raise ResumeError(
        f"ckpt_path=last: looked in {where} and {found}; start without ckpt_path, or pass "
        "ckpt_path=<run dir>/checkpoints/last.ckpt explicitly"
    )


def completed_epochs(checkpoint: Mapping[str, Any]) -> int:
    """Epochs whose training finished before the checkpoint was written."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError):
        return int(checkpoint.get("epoch", -1)) + 1


def trim_history(run_dir: Path, epochs: int) -> list[str]:
    """Keep only epochs ``< epochs`` in ``genotypes.jsonl`` and ``csv/metrics.csv``; return the
    files that exist (and will be appended to)."""
    kept = []
    jsonl = run_dir / "genotypes.jsonl"
    if jsonl.is_file():
        lines = [ln for ln in jsonl.read_text().splitlines() if ln.strip()]
        good = [ln for ln in lines if json.loads(ln).get("epoch", 0) < epochs]
        _rewrite(jsonl, "".join(ln + "\n" for ln in good))
        kept.append(str(jsonl))
    metrics = run_dir / "csv" / "metrics.csv"
    if metrics.is_file():
        with open(metrics, newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames or [], list(reader)
        good_rows = [r for r in rows if not r.get("epoch") or float(r["epoch"]) < epochs]
        tmp = metrics.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(good_rows)
        os.replace(tmp, metrics)
        kept.append(str(metrics))
    return kept


def _rewrite(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
