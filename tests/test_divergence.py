"""DivergenceGuard: a diverged search stops with a named step and quantity, exits non-zero, and
leaves the files of its last good epoch untouched."""

import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch

from nas_lightning.callbacks import DivergenceError, DivergenceGuard
from nas_lightning.callbacks.divergence import all_finite
from nas_lightning.run import build

ISSUE = [  # the command of issue 6: exits 0 with NaN α on main
    "debug=tiny",
    "trainer.max_epochs=4",
    "algo.weight_optimizer.lr=1e6",
    "algo.grad_clip=0",
    "algo.arch_optimizer.lr=1",
]
QUIET = [
    "logger=none",
    "~callbacks.rich_progress_bar",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def _fit_until_diverged(cfg, prepare=None):
    pl.seed_everything(int(cfg.seed))
    dm, algo, trainer = build(cfg)
    if prepare:
        prepare(algo, trainer)
    with pytest.raises(DivergenceError) as err:
        trainer.fit(algo, datamodule=dm)
    return str(err.value), trainer


def _alphas(ckpt: Path) -> list[torch.Tensor]:
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    return [v for k, v in state.items() if "alpha" in k]


def test_all_finite_is_one_check_over_many_tensors():
    big = torch.full((3,), 1e30)  # its 2-norm would overflow float32; its 1-norm does not
    assert all_finite([big, torch.tensor(2.0), torch.zeros(0), torch.ones(2, dtype=torch.float64)])
    assert not all_finite([big, torch.tensor([1.0, math.nan])])
    assert not all_finite([torch.tensor([-math.inf])])


def _guard_on(weight: torch.Tensor, grad_clip=0.0, bn_var=1.0):
    module = torch.nn.Module()
    module.alpha = torch.nn.Parameter(torch.zeros(2, 3))
    module.w = torch.nn.Parameter(weight)
    module.register_buffer("baseline", torch.tensor(math.nan))  # NaN = unset: not a statistic
    module.bn = torch.nn.BatchNorm1d(2)
    module.bn.running_var.fill_(bn_var)
    module.arch_parameters = lambda: [module.alpha]
    module.grad_clip = grad_clip
    opts = [torch.optim.SGD([module.w], lr=0.5), torch.optim.Adam([module.alpha], lr=0.1)]
    trainer = SimpleNamespace(current_epoch=3, global_step=40, optimizers=opts, world_size=1)
    guard = DivergenceGuard()
    guard.setup(trainer, module, "fit")
    guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(1.0)}, None, 7)


def test_guard_names_the_tensor_and_the_learning_rates():
    _guard_on(torch.full((10,), 1e38))  # finite values whose 1-norm overflows: no error
    with pytest.raises(
        DivergenceError, match=r"non-finite BatchNorm statistics \(bn.running_var\)"
    ):
        _guard_on(torch.ones(2), bn_var=math.inf)
    with pytest.raises(DivergenceError) as err:
        _guard_on(torch.tensor([1.0, math.inf]))
    assert str(err.value).startswith(
        "diverged at epoch 3, global step 40 (training batch 7): non-finite weights (w). "
        "Lower the learning rates: algo.weight_optimizer.lr (now 0.5), "
        "algo.arch_optimizer.lr (now 0.1), or clip the weight gradients: algo.grad_clip=5 (now 0)."
    )


def test_issue_command_stops_at_once_and_writes_nothing(compose_cfg, tmp_path, one_thread):
    cfg = compose_cfg(*ISSUE, *QUIET)
    msg, trainer = _fit_until_diverged(cfg)
    # weights of 1e10 still give finite train losses, but the eval-mode val loss is NaN
    assert msg.startswith(f"diverged at epoch 0, global step {trainer.global_step} (validation)")
    assert "non-finite val/loss (nan)" in msg
    assert "algo.weight_optimizer.lr (now" in msg and "algo.grad_clip=5 (now 0" in msg
    assert "\n" not in msg
    run = tmp_path / "run"
    assert not (run / "genotype.json").exists() and not list(run.rglob("*.ckpt"))


def _snapshot_after_epoch0(files: dict):
    class Snapshot(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:  # everything of epoch 0 is written by now
                root = Path(trainer.default_root_dir)
                for f in [root / "genotype.json", root / "genotypes.jsonl", *root.rglob("*.ckpt")]:
                    files[f] = f.read_bytes()

    return Snapshot()


def test_divergence_in_epoch_1_keeps_epoch_0_files(compose_cfg, tmp_path, one_thread):
    cfg = compose_cfg("debug=tiny", "trainer.max_epochs=3", *QUIET)
    files: dict[Path, bytes] = {}

    def prepare(algo, trainer):
        trainer.callbacks.append(_snapshot_after_epoch0(files))
        orig = algo.arch_step

        def exploding(train, val):  # an exploding hypergradient in epoch 1: Adam makes α NaN
            loss = orig(train, val)
            if algo.current_epoch == 1:
                for a in algo.arch_parameters():
                    a.grad = torch.full_like(a, math.inf)
            return loss

        algo.arch_step = exploding

    msg, trainer = _fit_until_diverged(cfg, prepare)
    assert trainer.global_step == 8  # 3 batches of epoch 0, then batch 0 of epoch 1: 2 steps each
    assert msg.startswith("diverged at epoch 1, global step 8 (training batch 0): non-finite ")
    assert "α (mixing.alpha.normal, mixing.alpha.reduce)" in msg
    assert "train/loss" in msg and "weight gradient (" in msg and "algo.arch_optimizer.lr" in msg

    run = tmp_path / "run"
    names = sorted(f.name for f in files)
    assert names == ["best_epoch_000.ckpt", "genotype.json", "genotypes.jsonl", "last.ckpt"]
    now = {f: f.read_bytes() for f in [*run.glob("genotype*"), *run.rglob("*.ckpt")]}
    assert now == files  # byte-identical, and nothing new (no exception checkpoint, no epoch 1)
    for ckpt in run.rglob("*.ckpt"):
        alphas = _alphas(ckpt)
        assert len(alphas) == 2 and all(torch.isfinite(a).all() for a in alphas)
    assert sorted(p.name for p in (run / "heatmaps").glob("*.png"))[-1].startswith("epoch_000")


@pytest.mark.slow
def test_cli_exits_non_zero_and_names_the_step(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "nas_lightning", *ISSUE, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NAS_ROOT": str(tmp_path)},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "diverged at epoch 0, global step 6 (validation): non-finite val/loss" in out
    assert not (run_dir / "genotype.json").exists() and not list(run_dir.rglob("*.ckpt"))
