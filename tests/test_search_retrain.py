"""The ProxylessNAS digits presets and ``task=search_retrain``: the preset settings the README
states, the retrain half's config, and a λ2 multirun whose retrained accuracy and measured
latency land in the report."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from run_helpers import TINY, cli, run_dirs

from nas_lightning.latency import LatencyLUT, space_ops
from nas_lightning.report.__main__ import main as report_main
from nas_lightning.retrain.chain import retrain_config

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_settings(preset: str) -> dict[str, str]:
    """The ``key=value`` pairs of the README sentence ``Settings of `experiment=<preset>`: …``."""
    (sentence,) = re.findall(
        rf"Settings of `experiment={preset}`:(.*?)\.\s", README.read_text(), re.S
    )
    return dict(re.findall(r"`([\w.]+)=([^`]+)`", sentence))


def test_proxyless_digits_preset_is_what_the_readme_says(compose_cfg):
    cfg = compose_cfg("experiment=proxyless_digits")
    claimed = readme_settings("proxyless_digits")
    assert {"algo.mode", "dataset.batch_size", "trainer.max_epochs"} <= set(claimed)
    for key, value in claimed.items():
        assert str(OmegaConf.select(cfg, key)) == value, key
    assert cfg.algo._target_.endswith("ProxylessSearch") and cfg.algo.mode == "binary"
    assert cfg.space.widths == [8, 16] and cfg.task == "search"


def test_latency_preset_sweeps_lambda2_and_retrains_each_job(compose_cfg):
    cfg = compose_cfg("experiment=proxyless_digits_latency")
    claimed = readme_settings("proxyless_digits_latency")
    for key, value in claimed.items():
        assert str(OmegaConf.select(cfg, key)) == value, key
    assert cfg.task == "search_retrain" and cfg.algo.mode == "binary"
    assert cfg.latency._target_.endswith("LatencyLUT.load") and cfg.optimized_metric == "test/acc"
    assert cfg.retrain.timing.clock == "cpu" and cfg.retrain.timing.batch_size == 1


def test_retrain_half_merges_its_own_dataset_trainer_and_callbacks(compose_cfg, tmp_path):
    cfg = compose_cfg("experiment=proxyless_digits_latency", "ckpt_path=last")
    out = retrain_config(cfg, tmp_path / "job")
    assert out.task == "retrain" and out.ckpt_path is None
    assert out.genotype == str(tmp_path / "job" / "genotype.json")
    assert out.dataset.train_split == "full" and out.dataset.batch_size == 32
    assert out.dataset._target_ == cfg.dataset._target_  # the rest of the search's dataset
    assert out.trainer.max_epochs == 30 and out.trainer.accelerator == "cpu"
    assert out.retrain.module.scheduler.T_max == 30  # ${trainer.max_epochs}: the retrain's
    assert set(out.callbacks) == {"last_checkpoint", "cell_diagram", "rich_progress_bar"}
    assert out.trainer.default_root_dir == str(tmp_path / "job" / "retrain")
    assert out.callbacks.last_checkpoint.dirpath == str(tmp_path / "job" / "retrain/checkpoints")
    assert not {"dataset", "trainer", "callbacks"} & set(out.retrain)
    # the search's config is untouched
    assert cfg.dataset.train_split == "search" and cfg.trainer.max_epochs == 40


def _lut(compose_cfg, path: Path) -> Path:
    """A LUT of the tiny space (1 ms per MBConv, ``zero`` free): no timing in tests."""
    cfg = compose_cfg("experiment=proxyless_digits", *TINY)
    space = instantiate(cfg.space, in_channels=1, num_classes=10, input_size=(8, 8))
    entries = {
        d.key(): {"median_ms": 1.0, "desc": d.to_dict()} for d in space_ops(space) if d.op != "zero"
    }
    LatencyLUT(entries, {"device": "cpu", "batch_size": 1}, path=str(path)).save(path)
    return path


def test_lambda2_multirun_reports_retrained_accuracy_and_measured_latency(
    compose_cfg, tmp_path, one_thread
):
    lut = _lut(compose_cfg, tmp_path / "lut.json")
    code = cli(
        "experiment=proxyless_digits_latency",
        *TINY,
        "trainer.max_epochs=2",
        "algo.warmup_epochs=0",
        f"latency.path={lut}",
        "algo.latency_weight=0,100",
        "retrain.trainer.max_epochs=1",
        "retrain.timing.warmup=1",
        "retrain.timing.repeats=3",
        f"paths.log_dir={tmp_path / 'outputs'}",
    )
    assert code == 0
    (sweep,) = run_dirs(tmp_path / "outputs", "multiruns", "proxyless_digits_latency")
    assert report_main([str(sweep)]) == 0
    rows = {r["job"]: r for r in csv.DictReader(open(sweep / "report.csv"))}
    assert list(rows) == ["0", "1"]
    for job, weight in (("0", "0"), ("1", "100")):
        row = rows[job]
        result = json.loads((sweep / job / "retrain" / "result.json").read_text())
        assert row["status"] == "completed" and row["varying"] == f"algo.latency_weight={weight}"
        # the CSV keeps 6 significant digits
        assert float(row["test_acc"]) == pytest.approx(result["test_acc"], rel=1e-5)
        assert float(row["latency_ms"]) == pytest.approx(result["latency_ms"], rel=1e-5)
        assert 0 <= result["test_acc"] <= 1 and result["latency_ms"] > 0
        assert result["latency"]["clock"] == "cpu" and result["epochs"] == 1
        # the retrained network is the search's genotype; the search's numbers stay beside it
        searched = json.loads((sweep / job / "genotype.json").read_text())
        assert result["genotype"] == searched
        assert float(row["expected_latency_ms"]) > 0 and row["val_acc"] != ""
        assert (sweep / job / "retrain" / "csv" / "metrics.csv").is_file()
    assert (sweep / "pareto.png").is_file()
