"""Data-parallel search on 2 CPU ranks (``trainer=ddp_cpu``): every algorithm ends with the same
α, weights and genotype on every rank, writes its files once (rank 0), and matches a one-process
run on the same global batch. The searches run in ``tests/ddp_search.py``, a subprocess that
spawns the two ranks itself (see its docstring)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ddp_search as D
import pytest
import torch

from nas_lightning.runtime.status import RANK_VARS, read_status, write_status

# float64 runs (see ddp_search.py): only the order of the sums differs between 2 ranks and one
# process (∑ over 8 + 8 samples, then the mean of 2 ranks, vs ∑ over 16). Measured: ≤ 1e-15
# after 4 steps, for α of size ~1e-1 (SGD lr 0.5 on α); a missing or doubled average moves α by
# ~1e-2, so 1e-10 leaves 1e5 of headroom for other BLAS builds and is still 1e8 below a bug.
ALPHA_ATOL = 1e-10
EPOCHS = 2


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=False)


@pytest.fixture(scope="module")
def searches(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(Path(D.__file__)), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("data, algo", D.RUNS, ids=[f"{d}-{a}" for d, a in D.RUNS])
def test_ranks_hold_identical_alpha_and_genotype(searches, data, algo):
    run = searches / data / algo
    r0, r1 = _load(run / "rank0.pt"), _load(run / "rank1.pt")
    assert r0["world_size"] == r1["world_size"] == 2
    assert len(r0["alpha"]) == len(r1["alpha"]) > 0
    for a, b in zip(r0["alpha"], r1["alpha"], strict=True):
        assert torch.equal(a, b)  # bitwise
    for a, b in zip(r0["weights"], r1["weights"], strict=True):
        assert torch.equal(a, b)
    assert r0["genotype"] == r1["genotype"]


@pytest.mark.slow
@pytest.mark.parametrize("data, algo", D.RUNS, ids=[f"{d}-{a}" for d, a in D.RUNS])
def test_rank_zero_writes_the_genotype_once_per_epoch(searches, data, algo):
    run = searches / data / algo
    lines = (run / "genotypes.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(EPOCHS))
    final = json.loads((run / "genotype.json").read_text())
    assert final == json.loads(lines[-1])["genotype"] == _load(run / "rank0.pt")["genotype"]
    assert not list(run.glob("*.tmp"))
    assert len(list((run / "checkpoints").glob("*.ckpt"))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("data, algo", D.COMPARED, ids=[f"{d}-{a}" for d, a in D.COMPARED])
def test_two_ranks_match_one_process_on_the_same_global_batch(searches, data, algo):
    run = searches / data / algo
    two, one = _load(run / "rank0.pt"), _load(run / "single.pt")
    assert one["world_size"] == 1
    moved = 0.0
    for a, b, b0 in zip(two["alpha"], one["alpha"], one["alpha0"], strict=True):
        assert a.dtype == torch.float64
        assert (a - b).abs().max().item() <= ALPHA_ATOL
        moved = max(moved, (b - b0).abs().max().item())
    assert moved > 1e-3  # α moved 1e7 times the tolerance: the comparison is not vacuous
    assert two["genotype"] == one["genotype"]


@pytest.mark.parametrize(
    "env, written",
    [
        ({}, True),
        ({"LOCAL_RANK": "1"}, False),
        ({"SLURM_PROCID": "0"}, True),
        ({"RANK": "3"}, False),
    ],
)
def test_only_rank_zero_writes_the_run_status(tmp_path, monkeypatch, env, written):
    """Under trainer=ddp every rank runs the job (Lightning re-runs the command, or srun starts
    them) in rank 0's run directory: only rank 0 records status.json."""
    for key in RANK_VARS:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    write_status(tmp_path, "completed", None, 0)
    assert read_status(tmp_path) == (
        {"status": "completed", "error": None, "exit_code": 0} if written else None
    )
