"""task=retrain: the module (aux loss, drop-path schedule), run_retrain end to end, ONNX export."""

import csv
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import FAST
from mobilenet_tiny import TINY
from test_cli import _run
from test_models import DARTS_V2, tiny_block_genotype
from torch import nn

from nas_lightning.genotype import save_genotype
from nas_lightning.models import DartsNetwork
from nas_lightning.retrain import RetrainModule, export_onnx, missing_export_modules
from nas_lightning.retrain.run import genotype_file, run_retrain
from nas_lightning.spaces import MobileNetSearchSpace

TINY_RETRAIN = [
    "task=retrain",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_test_batches=2",
    "dataset.batch_size=16",
    "retrain.model.init_channels=4",
    "retrain.model.layers=3",
    "retrain.timing.warmup=1",
    "retrain.timing.repeats=3",
    "retrain.threads=1",
]


class _TwoHeads(nn.Module):
    """Returns fixed logits and auxiliary logits, to check the loss arithmetic."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.drop_path_prob = 0.0

    def forward_with_aux(self, x):
        return x[:, :3] + self.w, x[:, 3:] * 2 + self.w


def test_training_loss_adds_weighted_aux_loss_with_label_smoothing():
    torch.manual_seed(0)
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 0, 1])
    module = RetrainModule(
        _TwoHeads(), torch.optim.SGD, auxiliary_weight=0.3, label_smoothing=0.1, num_classes=3
    )
    loss = module.training_step((x, y), 0)
    expect = F.cross_entropy(x[:, :3], y, label_smoothing=0.1) + 0.3 * F.cross_entropy(
        x[:, 3:] * 2, y, label_smoothing=0.1
    )
    assert torch.allclose(loss, expect)
    with pytest.raises(ValueError, match="drop_path_prob=1.5.*\\[0, 1\\)"):
        RetrainModule(_TwoHeads(), torch.optim.SGD, drop_path_prob=1.5)


def test_genotype_file_accepts_a_run_dir_and_names_a_missing_one(tmp_path):
    save_genotype(DARTS_V2, tmp_path / "genotype.json")
    assert genotype_file(tmp_path) == tmp_path / "genotype.json"
    with pytest.raises(FileNotFoundError, match="genotype file .*/nope does not exist"):
        genotype_file(tmp_path / "nope")
    with pytest.raises(ValueError, match="add genotype=<genotype.json"):
        genotype_file(None)


def test_darts_retrain_end_to_end(compose_cfg, tmp_path):
    save_genotype(DARTS_V2, tmp_path / "genotype.json")
    cfg = compose_cfg(*TINY_RETRAIN, f"genotype={tmp_path}")
    assert cfg.dataset.train_split == "full" and cfg.retrain.module.drop_path_prob == 0.2
    out = run_retrain(cfg)
    run = tmp_path / "run"
    result = json.loads((run / "result.json").read_text())
    assert result == json.loads(json.dumps(out["result"]))
    assert result["genotype"] == DARTS_V2.to_dict()
    assert 0 < result["params_M"] < 1 and result["aux_params_M"] > 0 and result["macs_M"] > 0
    assert 0.0 <= result["test_acc"] <= 1.0 and result["test_loss"] > 0
    assert result["latency_ms"] > 0 and result["latency"]["device"] == "cpu"
    assert result["latency"]["repeats"] == 3 and result["latency"]["batch_size"] == 1
    assert result["wall_time_s"] >= result["train_time_s"] > 0 and result["epochs"] == 2
    assert out["metrics"]["test/acc"] == result["test_acc"]
    if missing_export_modules():
        assert result["onnx"].startswith("skipped: ") and "[export]" in result["onnx"]
    else:
        assert result["onnx"]["max_abs_diff"] <= 1e-4 and (run / "model.onnx").stat().st_size
    assert json.loads((run / "genotype.json").read_text()) == DARTS_V2.to_dict()
    assert (run / "genotype.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    with open(run / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    drop = [float(r["train/drop_path_prob"]) for r in rows if r.get("train/drop_path_prob")]
    assert drop == pytest.approx([0.0, 0.1])  # linear: 0.2 · epoch / 2 epochs


def test_mobilenet_retrain_with_label_smoothing(compose_cfg, tmp_path, one_thread):
    space = MobileNetSearchSpace(**{**TINY, "num_classes": 10})
    genotype = tiny_block_genotype(space)
    save_genotype(genotype, tmp_path / "genotype.json")
    cfg = compose_cfg(
        *TINY_RETRAIN,
        *FAST,
        "trainer.max_epochs=1",
        "retrain.module.label_smoothing=0.1",
        "retrain.export_onnx=false",
        f"genotype={tmp_path / 'genotype.json'}",
    )
    result = run_retrain(cfg)["result"]
    assert result["genotype"]["type"] == "proxyless" and result["aux_params_M"] == 0
    reference = space.single_path(genotype)
    assert result["params_M"] == sum(p.numel() for p in reference.parameters()) / 1e6
    assert (
        0.0 <= result["test_acc"] <= 1.0 and result["onnx"] == "skipped: retrain.export_onnx=false"
    )


def test_export_true_without_the_extra_is_refused_before_training(
    compose_cfg, tmp_path, monkeypatch
):
    import nas_lightning.retrain.run as retrain_run

    monkeypatch.setattr(retrain_run, "missing_export_modules", lambda: ["onnxruntime"])
    cfg = compose_cfg(*TINY_RETRAIN, "retrain.export_onnx=true", f"genotype={tmp_path}")
    with pytest.raises(RuntimeError, match='needs onnxruntime: run pip install -e ".\\[export\\]"'):
        run_retrain(cfg)
    cfg = compose_cfg(*TINY_RETRAIN, "retrain.export_onnx=maybe", f"genotype={tmp_path}")
    with pytest.raises(
        ValueError, match="export_onnx='maybe' is invalid; valid: auto, true, false"
    ):
        run_retrain(cfg)


@pytest.mark.skipif(
    bool(missing_export_modules()),
    reason=f"optional extra not installed ({missing_export_modules()}): pip install -e '.[export]'",
)
def test_onnx_round_trip_matches_torch(tmp_path, one_thread):
    import onnx

    net = DartsNetwork(DARTS_V2, 1, 10, init_channels=4, layers=3, channels_last=True)
    net.train()  # the export must use eval mode (no aux head, no drop-path) and not change net
    net.drop_path_prob = 0.3
    info = export_onnx(net, (2, 1, 8, 8), tmp_path / "model.onnx")
    assert net.training and info["max_abs_diff"] <= 1e-4 and info["input_shape"] == [2, 1, 8, 8]
    model = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["logits"]
    assert not list(tmp_path.glob("*.data"))  # weights inside the one file


@pytest.mark.slow
def test_cli_dispatches_task_retrain(tmp_path):
    save_genotype(DARTS_V2, tmp_path / "genotype.json")
    run_dir = tmp_path / "run"
    args = [*TINY_RETRAIN, "trainer.max_epochs=1", f"genotype={tmp_path}"]
    _run(["-m", "nas_lightning", *args, f"hydra.run.dir={run_dir}"], tmp_path)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["epochs"] == 1 and 0 <= result["test_acc"] <= 1
    assert (run_dir / "genotype.png").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
