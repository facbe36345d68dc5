"""Sweeps beyond the basic launcher: joblib (parallel worker processes), submitit_local (one
process per job), Optuna; the failed jobs of a sweep, whatever ran them; W&B group and tags.

The launcher and sweeper plugins are the optional ``sweeps`` extra (CI installs it): without it
the tests that need one are skipped, saying so."""

from __future__ import annotations

import csv
import importlib.util

import pytest
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from run_helpers import TINY, cli, run_dirs, status

from nas_lightning.report.__main__ import main as report
from nas_lightning.run import build_loggers
from nas_lightning.runtime.rundir import register_resolvers
from nas_lightning.runtime.status import write_status
from nas_lightning.runtime.sweep import failed_jobs, metric_direction, missing_plugin


def installed(plugin: str) -> bool:
    try:  # without any plugin the hydra_plugins namespace itself is missing
        return importlib.util.find_spec(f"hydra_plugins.{plugin}") is not None
    except ImportError:
        return False


def needs(plugin: str):
    return pytest.mark.skipif(
        not installed(plugin),
        reason=f"{plugin} is in the optional `sweeps` extra: pip install -e '.[sweeps]'",
    )


BAD_THEN_GOOD = "algo.arch_optimizer.lr=-1,3e-4"  # job 0 fails when built, job 1 runs


def check_failed_then_completed(logs, capsys) -> None:
    (sweep,) = run_dirs(logs, "multiruns")
    failed, ok = status(sweep / "0"), status(sweep / "1")
    assert failed["status"] == "failed" and failed["error"].startswith("algo.arch_optimizer.lr=-1")
    assert ok["status"] == "completed" and (sweep / "1" / "genotype.json").is_file()
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("Error: 1 job(s) of the sweep failed") and f"{sweep / '0'}:" in last
    # the report reads the real files: the failed job is marked, the other is a point
    assert report([str(sweep)]) == 0
    rows = {r["job"]: r for r in csv.DictReader(open(sweep / "report.csv"))}
    assert (rows["0"]["status"], rows["0"]["pareto"]) == ("failed", "")
    assert rows["1"]["status"] == "completed" and rows["1"]["val_acc"] != ""


@pytest.mark.slow
@needs("hydra_joblib_launcher")
def test_joblib_jobs_run_in_parallel_processes_into_one_sweep_dir(tmp_path, capsys, one_thread):
    logs = tmp_path / "outputs"
    code = cli("-m", "launcher=joblib", *TINY, BAD_THEN_GOOD, f"paths.log_dir={logs}")
    assert code == 1
    check_failed_then_completed(logs, capsys)
    (sweep,) = run_dirs(logs, "multiruns")
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]


@pytest.mark.slow
@needs("hydra_submitit_launcher")
def test_submitit_local_runs_each_job_as_its_own_process(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job processes' torch: tiny convs, busy box
    logs = tmp_path / "outputs"
    args = ["-m", "launcher=submitit_local", "hydra.launcher.timeout_min=10", *TINY]
    assert cli(*args, BAD_THEN_GOOD, f"paths.log_dir={logs}") == 1
    check_failed_then_completed(logs, capsys)
    (sweep,) = run_dirs(logs, "multiruns")
    logs_of_jobs = sorted((sweep / ".submitit").glob("*/*_log.err"))
    assert len(logs_of_jobs) == 2  # one process per job, each with its own log


@needs("hydra_optuna_sweeper")
def test_optuna_sweeps_the_learning_rates_in_their_intervals(tmp_path, one_thread):
    logs = tmp_path / "outputs"
    opts = ["hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1"]
    assert cli("-m", "sweeper=optuna", *opts, *TINY, f"paths.log_dir={logs}") == 0
    (sweep,) = run_dirs(logs, "multiruns")
    assert [status(sweep / j)["status"] for j in ("0", "1")] == ["completed", "completed"]
    results = (sweep / "optimization_results.yaml").read_text()
    assert "best_params" in results and "algo.arch_optimizer.lr" in results
    for job in ("0", "1"):
        lr = [o for o in (sweep / job / ".hydra" / "overrides.yaml").read_text().splitlines()]
        value = float(next(o for o in lr if "algo.arch_optimizer.lr=" in o).split("=")[1])
        assert 1e-4 <= value <= 1e-2


def test_optuna_direction_follows_the_optimized_metric():
    register_resolvers()
    for metric, direction in (("val/acc", "maximize"), ("val/loss", "minimize")):
        with initialize_config_module("nas_lightning.conf", version_base="1.3"):
            cfg = compose(
                "search",
                overrides=[f"optimized_metric={metric}"]
                + (["sweeper=optuna"] if _optuna() else []),
                return_hydra_config=True,
            )
        if _optuna():
            assert cfg.hydra.sweeper.direction == direction
            assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.TPESampler"
        assert metric_direction(metric) == direction
    assert metric_direction("val/ppl") == "minimize"
    assert metric_direction("arch/expected_latency_ms") == "minimize"
    assert metric_direction("test/acc") == "maximize"


def _optuna() -> bool:
    return installed("hydra_optuna_sweeper")


def test_failed_jobs_are_read_from_status_files(tmp_path):
    write_status(tmp_path / "0", "completed", None, 0)
    write_status(tmp_path / "1", "failed", "space.nodes=0 is invalid", 1)
    write_status(tmp_path / ".submitit" / "7", "failed", "not a job", 1)
    assert failed_jobs(tmp_path) == [f"{tmp_path / '1'}: space.nodes=0 is invalid"]


def test_a_missing_plugin_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    line = missing_plugin(["seed=1,2", "launcher=joblib"])
    assert line == (
        "launcher=joblib needs the Hydra plugin hydra_joblib_launcher, which is not installed: "
        "run pip install -e '.[sweeps]'"
    )
    assert missing_plugin(["hydra/sweeper=optuna"]).startswith("hydra/sweeper=optuna needs")
    assert missing_plugin(["algo=darts"]) is None


def test_wandb_group_is_the_sweep_and_tags_are_the_chosen_groups(tmp_path):
    """The W&B logger of a multirun job (not started: its init arguments are checked)."""
    with initialize_config_module("nas_lightning.conf", version_base="1.3"):
        overrides = ["logger=wandb", "logger.offline=true", "algo=proxyless", "seed=3"]
        cfg = compose("search", overrides=overrides, return_hydra_config=True)
    job = tmp_path / "multiruns" / "2026-01-02_03-04-05" / "4"
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(job)
        cfg.hydra.mode = "MULTIRUN"
        cfg.paths.output_dir = str(job)
    HydraConfig.instance().set_config(cfg)
    try:
        (logger,) = build_loggers(cfg)
    finally:
        HydraConfig.instance().cfg = None
    init = logger._wandb_init
    assert init["group"] == "search/2026-01-02_03-04-05" and init["name"] == "search/4"
    assert init["tags"] == ["logger=wandb", "algo=proxyless"]


@pytest.mark.parametrize(
    "option, plugin, settings",
    [
        ("joblib", "hydra_joblib_launcher", {"n_jobs": 2, "prefer": "processes"}),
        ("submitit_local", "hydra_submitit_launcher", {"timeout_min": 120, "gpus_per_node": 0}),
        (
            "submitit_slurm",
            "hydra_submitit_launcher",
            {"partition": None, "timeout_min": 1440, "gpus_per_node": 1, "array_parallelism": 8},
        ),
    ],
)
def test_launcher_presets_pick_the_plugin_with_their_defaults(option, plugin, settings):
    if not installed(plugin):
        pytest.skip(f"{plugin} is in the optional `sweeps` extra: pip install -e '.[sweeps]'")
    with initialize_config_module("nas_lightning.conf", version_base="1.3"):
        cfg = compose("search", overrides=[f"launcher={option}"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.startswith(f"hydra_plugins.{plugin}.")
    assert {k: launcher[k] for k in settings} == settings
