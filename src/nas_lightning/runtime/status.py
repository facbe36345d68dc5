"""``status.json`` in every run directory, so a sweep report can tell failed jobs apart.

``{"status": "running" | "completed" | "failed" | "interrupted", "error": <one line or null>,
"exit_code": <int or null>}``. A run killed without warning (SIGKILL, power loss) stays
``running``: with no live process, that means it died; resume it with ``ckpt_path=last``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILENAME = "status.json"
STATUSES = ("running", "completed", "failed", "interrupted")
# where a data-parallel process finds its global rank, in Lightning's order (rank_zero_only)
RANK_VARS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def process_rank() -> int:
    """This process's global rank under DDP (``trainer=ddp``: every rank runs the whole job),
    0 outside a data-parallel run."""
    for key in RANK_VARS:
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def write_status(
    run_dir: str | Path, status: str, error: str | None = None, exit_code: int | None = None
) -> Path:
    """Atomically (temp file + rename) write ``run_dir/status.json``; under DDP only rank 0
    writes (the other ranks share its run directory)."""
    if status not in STATUSES:
        raise ValueError(f"status={status!r}; valid: {', '.join(STATUSES)}")
    path = Path(run_dir) / FILENAME
    if process_rank() != 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"status": status, "error": error, "exit_code": exit_code}) + "\n")
    os.replace(tmp, path)
    return path


def read_status(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / FILENAME
    return json.loads(path.read_text()) if path.is_file() else None
