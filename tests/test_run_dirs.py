"""Runs never share a directory, even when started in the same second; every job records its
outcome in status.json, and one failed job of a multirun does not stop the others."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import hydra.core.utils
import pytest
from omegaconf import OmegaConf
from run_helpers import TINY, cli, run_dirs, status

from nas_lightning.runtime.rundir import claim_unique_dir


class _FrozenClock(datetime):
    """Hydra's ``${now:...}``: every run starts in the very same second."""

    @classmethod
    def now(cls, tz=None):  # noqa: ARG003
        return datetime(2026, 1, 2, 3, 4, 5)


@pytest.fixture
def same_second(monkeypatch):
    monkeypatch.setattr(hydra.core.utils, "datetime", _FrozenClock)


def test_claim_unique_dir_never_returns_a_taken_name(tmp_path):
    base = str(tmp_path / "runs" / "2026-01-02_03-04-05")
    claimed = [claim_unique_dir(base) for _ in range(3)]
    assert claimed == [base, base + "_1", base + "_2"]
    assert all(Path(p).is_dir() for p in claimed)


def test_two_runs_in_the_same_second_get_their_own_directories(tmp_path, same_second, one_thread):
    logs = tmp_path / "outputs"
    for seed in (1, 7):
        assert cli(*TINY, "logger=csv", f"seed={seed}", f"paths.log_dir={logs}") == 0
    first, second = run_dirs(logs)
    assert first.name == "2026-01-02_03-04-05" and second.name == "2026-01-02_03-04-05_1"
    for run, seed in ((first, 1), (second, 7)):
        assert OmegaConf.load(run / ".hydra" / "config.yaml").seed == seed
        rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
        assert [r["epoch"] for r in rows if r.get("val/acc")] == ["0"]  # one run's rows only
        assert status(run) == {"status": "completed", "error": None, "exit_code": 0}
        # each genotype history holds its own single epoch, not both runs' lines
        assert len((run / "genotypes.jsonl").read_text().splitlines()) == 1


def test_failed_job_is_recorded_and_the_sweep_goes_on(tmp_path, same_second, one_thread, capsys):
    logs = tmp_path / "outputs"
    # the first job gets a bad value; the second must still run; a second sweep in the same
    # second gets its own sweep directory
    code = cli("-m", *TINY, "algo.arch_optimizer.lr=-1,3e-4", f"paths.log_dir={logs}")
    assert cli("-m", *TINY, "seed=3", f"paths.log_dir={logs}") == 0
    assert code == 1
    sweep, other = run_dirs(logs, "multiruns")
    assert other.name == sweep.name + "_1"
    failed, ok = status(sweep / "0"), status(sweep / "1")
    assert failed["status"] == "failed" and failed["exit_code"] == 1
    assert failed["error"] == (
        "algo.arch_optimizer.lr=-1 is invalid for torch.optim.Adam (Invalid learning rate: -1); "
        "fix algo.arch_optimizer.lr"
    )
    assert ok["status"] == "completed" and (sweep / "1" / "genotype.json").is_file()
    log = (sweep / "0" / "search.log").read_text()
    assert "Traceback (most recent call last)" in log and failed["error"] in log
    err = capsys.readouterr().err
    assert "Traceback" not in err  # the console gets one line per failure, no traceback
    assert err.strip().splitlines()[-1].startswith("Error: 1 job(s) of the sweep failed")
