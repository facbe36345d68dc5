"""W&B dashboards, offline (no network, no login): a ProxylessNAS job of a multirun logs the α
heatmap as an image every epoch, the genotype as a table, the cell diagram, the expected
latency and the composed config, in the sweep's group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_helpers import cli, run_dirs

PROXYLESS = [
    "algo=proxyless",
    "space=mobilenet_tiny",
    "latency=flops",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    import wandb

    wandb.teardown()  # independent of W&B state other tests left in this process
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    yield wandb
    wandb.finish()
    wandb.teardown()


def test_wandb_offline_run_holds_heatmaps_genotype_table_and_diagram(
    tmp_path, wandb_offline, one_thread
):
    logs = tmp_path / "outputs"
    args = ["-m", *PROXYLESS, "logger=wandb", "logger.offline=true", "seed=1"]
    assert cli(*args, f"paths.log_dir={logs}") == 0
    wandb_offline.finish()  # flush: media are written by W&B's service process
    (sweep,) = run_dirs(logs, "multiruns")
    (run,) = (sweep / "0" / "wandb").glob("offline-run-*")
    media = run / "files" / "media"
    heatmaps = sorted((media / "images" / "arch").glob("heatmap_blocks_*.png"))
    assert len(heatmaps) == 2  # one per epoch
    assert len(list((media / "images" / "arch").glob("genotype_diagram_*.png"))) == 1
    tables = sorted((media / "table" / "arch").glob("genotype_*.table.json"))
    assert len(tables) == 2
    first = json.loads(tables[0].read_text())
    assert first["columns"] == ["epoch", "genotype"] and first["data"][0][0] == 0
    assert first["data"][0][1].startswith("BlockGenotype(s0b0=mbconv")
    assert all(p.stat().st_size > 5_000 for p in heatmaps)
    # metrics, config, group and tags live in the run's record file (protobuf, uncompressed)
    (records,) = run.glob("run-*.wandb")
    data = records.read_bytes()
    assert b"arch/expected_latency_ms" in data and b"val/acc" in data
    assert f"search/{sweep.name}".encode() in data  # the group: the sweep
    assert b"algo=proxyless" in data and b"latency_weight" in data  # a tag; the config
    assert Path(sweep / "0" / "status.json").is_file()
