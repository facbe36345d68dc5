"""The command line, run in this process (``python -m nas_lightning …`` without the 5 s of a
fresh interpreter), and the tiny settings the run-level tests share."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from nas_lightning.__main__ import main

# one epoch of two tiny batches: the whole loop (checkpoints, history, status) in ~1 s
TINY = [
    "debug=tiny",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.alpha_heatmap=null",
]


def cli(*args: str) -> int:
    """``python -m nas_lightning *args`` in-process; the exit code (0 when main returns).
    Hydra's log handlers (the run's search.log) are closed and the previous ones restored."""
    root = logging.getLogger()
    saved_handlers, saved_level, saved_argv = root.handlers[:], root.level, sys.argv
    sys.argv = ["nas_lightning", *args]
    try:
        main()
        return 0
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = saved_argv
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def run_dirs(log_dir: Path, kind: str = "runs", task: str = "search") -> list[Path]:
    """Run directories under ``log_dir/<task>/<kind>``, oldest first by name."""
    return sorted(p for p in (log_dir / task / kind).glob("*") if p.is_dir())


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def epochs_in(run_dir: Path) -> list[int]:
    """The epochs recorded in ``genotypes.jsonl``, in file order."""
    lines = (run_dir / "genotypes.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]
