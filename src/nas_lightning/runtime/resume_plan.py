"""A resume from start to fit: which checkpoint, does it fit, is there anything left to train,
and where the history goes (the same run directory, appended, or a new one, linked)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nas_lightning.runtime.checkpoint_check import check_fits, read_checkpoint
from nas_lightning.runtime.resume import (
    completed_epochs,
    config_diff,
    describe_diff,
    find_last_checkpoint,
    run_config,
    run_dir_of,
    trim_history,
)

log = logging.getLogger("nas_lightning.resume")


@dataclass
class ResumePlan:
    path: Path
    checkpoint: dict[str, Any]
    completed: int  # epochs done when the checkpoint was written
    source_dir: Path | None  # the run directory the checkpoint belongs to
    run_dir: Path  # where this run writes

    @property
    def same_dir(self) -> bool:
        return self.source_dir is not None and self.source_dir == self.run_dir


def locate(
    ckpt_path: str, config: dict[str, Any], task_dir: Path, run_dirs: list[Path] = ()
) -> tuple[Path, Path | None]:
    """The checkpoint file (``last`` resolved) and the run directory a resume should continue
    in: the checkpoint's own, if that run had this config (resumable fields aside)."""
    if ckpt_path == "last":
        path = find_last_checkpoint(task_dir, config, run_dirs)
    else:
        path = Path(ckpt_path).expanduser().resolve()
    source = run_dir_of(path)
    recorded = run_config(source) if source is not None else None
    if recorded is None or config_diff(recorded, config):
        return path, None
    return path, source


def plan_resume(
    ckpt_path: Any, config: dict[str, Any], task_dir: Path, run_dir: Path
) -> ResumePlan | None:
    """``None`` without ``ckpt_path``; otherwise the checkpoint, read and located."""
    if ckpt_path in (None, ""):
        return None
    run_dir = run_dir.resolve()
    path, _ = locate(str(ckpt_path), config, task_dir, [run_dir])
    ckpt = read_checkpoint(path)
    return ResumePlan(path, ckpt, completed_epochs(ckpt), run_dir_of(path), run_dir)


def prepare(
    plan: ResumePlan, module: torch.nn.Module, config: dict[str, Any], max_epochs: int | None
) -> bool:
    """Refuse a checkpoint that does not fit ``module``; say what the resume does. Returns
    ``True`` when the checkpoint's run already trained ``max_epochs`` (nothing to do)."""
    recorded = run_config(plan.source_dir) if plan.source_dir is not None else None
    diff = check_fits(plan.checkpoint, module, plan.path, config, recorded)
    source = plan.source_dir or plan.path.parent
    if max_epochs is not None and max_epochs >= 0 and plan.completed >= max_epochs:
        genotype = source / "genotype.json"
        where = (
            f"its genotype is {genotype}"
            if genotype.is_file()
            else "it left no genotype.json (callbacks off); the genotype is derived from the "
            "checkpoint below"
        )
        log.info(
            "Run %s already finished: %d/%d epochs done (trainer.max_epochs=%d), nothing to "
            "train; %s. To search longer, resume with a larger trainer.max_epochs",
            source,
            plan.completed,
            max_epochs,
            max_epochs,
            where,
        )
        return True
    horizon = "unbounded" if max_epochs in (None, -1) else str(max_epochs)
    if plan.same_dir:
        kept = trim_history(plan.run_dir, plan.completed)
        log.info(
            "Resuming %s at epoch %d/%s in the same run directory %s; appending to %s",
            plan.path,
            plan.completed,
            horizon,
            plan.run_dir,
            ", ".join(kept) or "its history",
        )
    else:
        differs = f"; settings that differ from it: {describe_diff(diff)}" if diff else ""
        log.info(
            "Resuming %s (run %s, %d epochs done) up to epoch %s; this run writes to a new "
            "directory %s, its earlier history stays in %s%s",
            plan.path,
            source,
            plan.completed,
            horizon,
            plan.run_dir,
            source,
            differs,
        )
    return False
