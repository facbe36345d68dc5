"""Resume: ``ckpt_path=last`` finds the run, continues in its directory with the new horizon,
says when there is nothing left to do, and reproduces an uninterrupted run exactly."""

from __future__ import annotations

import csv
import io
import math
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from run_helpers import TINY, cli, epochs_in, run_dirs, status

from nas_lightning.callbacks import ResumeState
from nas_lightning.data import DigitsDataModule


def _run_once(logs: Path, *extra: str) -> Path:
    assert cli(*TINY, "logger=csv", "seed=11", f"paths.log_dir={logs}", *extra) == 0
    (run,) = run_dirs(logs)
    return run


def _metric(run: Path, name: str) -> list[float]:
    rows = csv.DictReader(io.StringIO((run / "csv" / "metrics.csv").read_text()))
    return [float(r[name]) for r in rows if r.get(name)]


def test_train_order_depends_only_on_seed_and_epoch():
    """A restarted run must see epoch k's order, not replay epoch 0's."""

    def orders(dm, epochs):
        out = []
        for epoch in epochs:
            loader = dm.train_dataloader().flattened[0]
            loader.sampler.set_epoch(epoch)  # what Lightning does before each epoch
            out.append(torch.cat([y for _, y in loader]).tolist())
        return out

    continued = orders(DigitsDataModule(batch_size=32, seed=4), [0, 1, 2])
    restarted = orders(DigitsDataModule(batch_size=32, seed=4), [2])
    assert restarted[0] == continued[2] and continued[0] != continued[2]


def test_rng_states_travel_in_the_checkpoint(tmp_path):
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    state = ResumeState().state_dict()
    torch.save(state, tmp_path / "s.pt")  # must load with weights_only=True, like checkpoints
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    callback = ResumeState()
    callback.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    callback.on_train_start(None, None)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def test_resume_last_continues_in_the_same_directory_with_the_new_horizon(tmp_path, one_thread):
    logs = tmp_path / "outputs"
    run = _run_once(logs)
    assert cli(*TINY, "logger=csv", "seed=11", f"paths.log_dir={logs}", "ckpt_path=last",
               "trainer.max_epochs=3") == 0  # fmt: skip
    assert run_dirs(logs) == [run]  # no second directory
    assert epochs_in(run) == [0, 1, 2] and sorted(set(_metric(run, "epoch"))) == [0, 1, 2]
    # cosine over the new horizon (T_max=3) from epoch 1 on: lr after each epoch's step
    cosine = [0.001 + 0.024 * (1 + math.cos(math.pi * e / 3)) / 2 for e in (2, 3)]
    assert _metric(run, "train/lr") == pytest.approx([0.001, *cosine], abs=1e-9)
    log = (run / "search.log").read_text()
    assert f"in the same run directory {run}; appending to {run / 'genotypes.jsonl'}" in log
    assert "LR schedule rebuilt for this run's horizon: CosineAnnealingLR T_max 1 -> 3" in log
    assert status(run)["status"] == "completed"


def test_resuming_a_finished_run_says_so_and_trains_nothing(tmp_path, one_thread):
    logs = tmp_path / "outputs"
    run = _run_once(logs)
    before = (run / "genotypes.jsonl").read_text()
    assert cli(*TINY, "logger=csv", "seed=11", f"paths.log_dir={logs}", "ckpt_path=last") == 0
    log = (run / "search.log").read_text()
    assert f"Run {run} already finished: 1/1 epochs done (trainer.max_epochs=1)" in log
    assert f"its genotype is {run / 'genotype.json'}" in log and (run / "genotype.json").is_file()
    assert (run / "genotypes.jsonl").read_text() == before
    assert status(run) == {"status": "completed", "error": None, "exit_code": 0}


def test_ckpt_path_last_without_a_matching_run_names_where_it_looked(tmp_path, one_thread):
    logs = tmp_path / "outputs"
    run = _run_once(logs)
    assert cli(*TINY, "seed=12", f"paths.log_dir={logs}", "ckpt_path=last") == 1
    (failed,) = [d for d in run_dirs(logs) if d != run]
    task = logs.resolve() / "search"
    assert status(failed)["error"] == (
        f"ckpt_path=last: looked in {task}/{{runs/*/checkpoints/last.ckpt,"
        "multiruns/*/*/checkpoints/last.ckpt} and found 1 last.ckpt, none with this config "
        f"(nearest, {run.resolve()}: seed: 11 in the checkpoint's run, 12 now); start without "
        "ckpt_path, or pass ckpt_path=<run dir>/checkpoints/last.ckpt explicitly"
    )


def _final_state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    # bitwise equal; NaN == NaN (ProxylessNAS's REINFORCE baseline is NaN until first used)
    different = [k for k in a if not torch.allclose(a[k], b[k], rtol=0, atol=0, equal_nan=True)]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_proxyless_resume_reproduces_the_uninterrupted_run(tmp_path, one_thread):
    """Binary ProxylessNAS samples paths from the global RNG: exact only if the checkpoint
    carries the RNG state and the data order depends on (seed, epoch) alone."""
    common = [*TINY, "experiment=proxyless_digits", "algo.warmup_epochs=0", "logger=none"]
    common += ["trainer.deterministic=true", "seed=5"]
    assert cli(*common, "trainer.max_epochs=2", f"paths.log_dir={tmp_path / 'a'}") == 0
    b = [*common, f"paths.log_dir={tmp_path / 'b'}"]
    assert cli(*b, "trainer.max_epochs=1") == 0
    assert cli(*b, "trainer.max_epochs=2", "ckpt_path=last") == 0
    task = "proxyless_digits"
    (run_a,), (run_b,) = run_dirs(tmp_path / "a", task=task), run_dirs(tmp_path / "b", task=task)
    _assert_same_state(_final_state(run_a), _final_state(run_b))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_run(tmp_path):
    """The strongest promise: killed without warning in the middle of epoch 2, resumed with
    ``ckpt_path=last``, the final α (and every other tensor) is bit-identical."""
    common = ["debug=tiny", "trainer.max_epochs=3", "trainer.deterministic=true", "seed=5"]
    common += ["trainer.enable_progress_bar=false", "callbacks.alpha_heatmap=null"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}

    def search(log_dir: Path, *extra: str) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "nas_lightning", *common, f"paths.log_dir={log_dir}"]
        return subprocess.run(
            [*args, *extra], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )

    assert search(tmp_path / "a").returncode == 0
    # 3 batches per epoch, 2 optimiser steps each: global step 8 is one batch into epoch 2
    kill = ["+callbacks.kill._target_=kill_switch.KillAtStep", "+callbacks.kill.step=8"]
    killed = search(tmp_path / "b", *kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (run_b,) = run_dirs(tmp_path / "b")
    assert status(run_b)["status"] == "running"  # died without a word
    resumed = search(tmp_path / "b", "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (
        f"Resuming {run_b.resolve() / 'checkpoints' / 'last.ckpt'} at epoch 1/3"
        in (run_b / "search.log").read_text()
    )
    (run_a,) = run_dirs(tmp_path / "a")
    _assert_same_state(_final_state(run_a), _final_state(run_b))
    assert (run_a / "genotype.json").read_text() == (run_b / "genotype.json").read_text()
    assert epochs_in(run_b) == [0, 1, 2]
    assert _metric(run_b, "val/loss") == _metric(run_a, "val/loss")
