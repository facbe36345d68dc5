"""``python -m nas_lightning algo=darts space=cnn``: compose the config and run the search.

Around Hydra's entry point: a run given ``ckpt_path=`` continues in its checkpoint's run
directory (``hydra.run.dir`` is set before Hydra starts, ``ckpt_path=last`` resolved to the
file); each job's outcome becomes ``status.json`` and the exit code (1 failed, 143 SIGTERM);
in a multirun a failed job is recorded and the others still run; when the sweep ends the
failed jobs (read back from their ``status.json``, whatever process or node ran them) are
listed and the exit code is 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from nas_lightning.runtime.rundir import register_resolvers
from nas_lightning.runtime.sweep import FAILED_JOBS, missing_plugin

CONFIG_PATH = "pkg://nas_lightning.conf"
CONFIG_NAME = "search"


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)
def search(cfg: DictConfig) -> float | None:
    if cfg.get("task") == "retrain":  # imported here so --help stays fast
        from nas_lightning.retrain.run import run_retrain as run
    elif cfg.get("task") == "search_retrain":
        from nas_lightning.retrain.chain import run_search_retrain as run
    else:
        from nas_lightning.run import run
    from nas_lightning.runtime.job import JobContext, run_guarded

    hc = HydraConfig.get()
    ctx = JobContext(
        run_dir=Path(hc.runtime.output_dir),
        overrides=list(hc.overrides.task),
        multirun=hc.mode == RunMode.MULTIRUN,
    )
    outcome = run_guarded(lambda: run(cfg), ctx)
    if outcome.status == "completed":
        metric = cfg.get("optimized_metric")
        return outcome.result["metrics"].get(metric) if metric else None
    if outcome.status == "failed" and ctx.multirun:  # listed by runtime.sweep.SweepOutcome
        return None
    sys.exit(outcome.exit_code)


def resume_argv(argv: list[str]) -> list[str]:
    """``ckpt_path=`` in a single run: add ``hydra.run.dir=<the checkpoint's run dir>`` when
    that run had this config, and replace ``ckpt_path=last`` by the file it means. Anything
    unexpected leaves ``argv`` as it is: ``run()`` then reports the problem inside the run."""
    from hydra import compose, initialize_config_module
    from hydra._internal.utils import get_args_parser

    from nas_lightning.runtime.job import override
    from nas_lightning.runtime.resume_plan import locate

    try:
        args = get_args_parser().parse_args(argv[1:])
    except SystemExit:
        return argv
    info = (args.help, args.hydra_help, args.cfg, args.info, args.shell_completion)
    overrides = list(args.overrides)
    if args.multirun or any(info) or not any("ckpt_path=" in o for o in overrides):
        return argv
    if any(o.startswith("hydra.run.dir=") for o in overrides):
        return argv  # an explicit run directory wins
    try:
        with initialize_config_module("nas_lightning.conf", version_base="1.3"):
            cfg = compose(args.config_name or CONFIG_NAME, overrides=overrides)
        ckpt = cfg.get("ckpt_path")
        if ckpt in (None, ""):
            return argv
        record = OmegaConf.to_container(cfg, resolve=False)
        task_dir = Path(str(OmegaConf.select(cfg, "paths.log_dir"))) / str(cfg.task_name)
        path, run_dir = locate(str(ckpt), record, task_dir)
    except Exception:  # e.g. no checkpoint found: run() reports it in the run's log
        return argv
    kept = [a for a in argv if a not in overrides or "ckpt_path=" not in a]
    extra = [override("ckpt_path", path)]
    if run_dir is not None:
        extra.append(override("hydra.run.dir", run_dir))
    return kept + extra


def main() -> None:
    """Console entry point (``nas-lightning``) and ``python -m nas_lightning``."""
    register_resolvers()
    problem = missing_plugin(sys.argv[1:])
    if problem:
        print(f"Error: {problem}", file=sys.stderr)
        sys.exit(1)
    sys.argv = resume_argv(sys.argv)
    FAILED_JOBS.clear()
    search()
    if FAILED_JOBS:
        print(
            f"Error: {len(FAILED_JOBS)} job(s) of the sweep failed (status.json in each job "
            f"directory): " + " | ".join(FAILED_JOBS),
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
