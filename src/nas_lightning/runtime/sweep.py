"""Sweep-level plumbing: the failed jobs of a multirun, the Optuna direction of a metric, the
W&B group and tags of a job, and the launcher/sweeper plugins of the ``sweeps`` extra.

Jobs of a multirun may run in other processes (joblib workers, submitit or SLURM jobs), so the
failures are read back from each job's ``status.json`` when the sweep ends, not kept in memory.
``SweepOutcome`` is the one Hydra hook here (``hydra.callbacks`` in ``conf/hydra/default.yaml``);
everything else is plain Python.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from nas_lightning.runtime.status import FILENAME, read_status

FAILED_JOBS: list[str] = []  # "<job dir>: <error>" of the last sweep, read by __main__.main
INSTALL_HINT = "pip install -e '.[sweeps]'"
# launcher/sweeper option → the Hydra plugin package that provides it
PLUGINS = {
    "joblib": "hydra_plugins.hydra_joblib_launcher",
    "submitit_local": "hydra_plugins.hydra_submitit_launcher",
    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher",
    "optuna": "hydra_plugins.hydra_optuna_sweeper",
}
# metrics a sweep should make small; any other metric (accuracy, …) is maximised
_MINIMISED = re.compile(r"loss|ppl|perplexity|err|latency|_ms$|time|params|macs")


def failed_jobs(sweep_dir: str | Path) -> list[str]:
    """``"<job dir>: <error>"`` for every job under ``sweep_dir`` whose status is ``failed``."""
    out = []
    for path in sorted(Path(sweep_dir).rglob(FILENAME)):
        if ".submitit" in path.parts:
            continue
        status = read_status(path.parent) or {}
        if status.get("status") == "failed":
            out.append(f"{path.parent}: {status.get('error')}")
    return out


def metric_direction(metric: str | None) -> str:
    """``minimize`` for losses, perplexities, errors, latencies, sizes; else ``maximize``."""
    name = str(metric or "").rsplit("/", 1)[-1].lower()
    return "minimize" if _MINIMISED.search(name) else "maximize"


def missing_plugin(overrides: list[str]) -> str | None:
    """One line when an override picks a launcher/sweeper whose plugin is not installed."""
    for item in overrides:
        m = re.fullmatch(r"(hydra/)?(launcher|sweeper)=(\w+)", item.strip())
        if not m or m.group(3) not in PLUGINS:
            continue
        try:
            found = importlib.util.find_spec(PLUGINS[m.group(3)]) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return (
                f"{item} needs the Hydra plugin {PLUGINS[m.group(3)].split('.')[-1]}, which is "
                f"not installed: run {INSTALL_HINT}"
            )
    return None


def sweep_identity(
    job_dir: str | Path, task_name: str, overrides: list[str], groups: list[str]
) -> dict[str, Any]:
    """W&B ``group`` (one per sweep: ``<task_name>/<sweep dir name>``) and ``tags`` (the job's
    config-group choices, ``algo=proxyless``) of a multirun job."""
    tags = []
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        if key in groups and value:
            tags.append(f"{key}={value}"[:64])  # W&B's tag length limit
    return {"group": f"{task_name}/{Path(job_dir).parent.name}", "tags": tags}


class SweepOutcome(Callback):
    """At the end of a multirun, collect its failed jobs into ``FAILED_JOBS``."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        FAILED_JOBS.clear()

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        FAILED_JOBS[:] = failed_jobs(str(config.hydra.sweep.dir))
