"""The command line as a user runs it: help, an end-to-end search, a non-editable install."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _run(args, cwd, env=None, timeout=600):
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_help_lists_config_groups(tmp_path):
    out = _run(["-m", "nas_lightning", "--help"], tmp_path).stdout
    for line in (
        "algo: darts, darts_2nd",
        "space: cnn",
        "dataset: cifar10, digits, ptb, synthetic, synthetic_text, wikitext2",
        "logger: csv, none, tensorboard, wandb",
        "debug: fdr, tiny",
    ):
        assert line in out, out


@pytest.mark.slow
def test_end_to_end_search_leaves_outputs(tmp_path):
    run_dir = tmp_path / "run"
    _run(
        ["-m", "nas_lightning", "debug=tiny", "trainer.max_epochs=2", f"hydra.run.dir={run_dir}"],
        tmp_path,
    )
    genotype = json.loads((run_dir / "genotype.json").read_text())
    assert genotype["type"] == "darts_cnn" and len(genotype["normal"]) == 8
    history = [json.loads(line) for line in (run_dir / "genotypes.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1] and history[-1]["genotype"] == genotype
    for epoch in (0, 1):
        for cell in ("normal", "reduce"):
            png = run_dir / "heatmaps" / f"epoch_{epoch:03d}_{cell}.png"
            assert png.read_bytes()[:4] == b"\x89PNG"
    for f in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        assert (run_dir / ".hydra" / f).exists()
    metrics = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "val/acc", "arch/entropy", "arch/skip_count"} <= set(metrics)

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert "mixing.alpha.normal" in ckpt["state_dict"]
    assert len(ckpt["optimizer_states"]) == 2  # weights (SGD) and α (Adam)
    assert "momentum_buffer" in str(ckpt["optimizer_states"][0]["state"].get(0, {}).keys())
    assert ckpt["epoch"] == 1


@pytest.mark.slow
def test_installed_package_finds_its_configs(tmp_path):
    """A non-editable wheel install (no src/ on the path) composes the packaged configs."""
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    _run(
        [
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(ROOT),
        ],
        tmp_path,
    )
    (wheel,) = wheel_dir.glob("nas_lightning-*.whl")
    _run(["-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], tmp_path)
    code = (
        "import nas_lightning, sys\n"
        "assert 'site' in nas_lightning.__file__, nas_lightning.__file__\n"
        "from hydra import compose, initialize_config_module\n"
        "with initialize_config_module('nas_lightning.conf', version_base='1.3'):\n"
        "    cfg = compose('search', overrides=['algo=darts_2nd', 'dataset=cifar10'])\n"
        "print(cfg.algo.order, cfg.dataset._target_)\n"
    )
    # -S-less isolation: put only the installed copy first and drop the editable finder
    env = {"PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"}
    out = _run(
        ["-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r})\n{code}"], tmp_path, env=env
    ).stdout
    assert "2 nas_lightning.data.CIFAR10DataModule" in out
    out = _run(
        [
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(target)!r}); "
            "sys.argv = ['nas_lightning', '--help']; import runpy; "
            "runpy.run_module('nas_lightning', run_name='__main__')",
        ],
        tmp_path,
        env=env,
    ).stdout
    assert "algo: darts, darts_2nd" in out
