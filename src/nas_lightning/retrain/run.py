"""``run_retrain(cfg)``: train a genotype's network from scratch, test it, measure it.

``python -m nas_lightning task=retrain genotype=<genotype.json | search run dir>``. The data
module serves the whole training pool (``dataset.train_split=full``: search-train and
search-val) and the held-out test split; ``result.json`` records the size, latency and test
accuracy of the trained network. Knows Hydra (instantiate), like ``nas_lightning.run``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from nas_lightning.genotype import load_genotype, save_genotype
from nas_lightning.latency.timing import time_module
from nas_lightning.models import count_macs, count_params
from nas_lightning.retrain.export import INSTALL_HINT, export_onnx, missing_export_modules
from nas_lightning.run import build_loggers, instantiate_all

log = logging.getLogger(__name__)
EXPORT_CHOICES = ("auto", True, False)


def genotype_file(path: str | Path | None) -> Path:
    """``path`` itself, or ``path/genotype.json`` for a search run directory."""
    if path is None or str(path) == "":
        raise ValueError(
            "no genotype given: add genotype=<genotype.json | search run directory>, e.g. "
            "genotype=outputs/search/runs/<run>"
        )
    p = Path(str(path)).expanduser()
    if p.is_dir():
        p = p / "genotype.json"
    if not p.is_file():
        raise FileNotFoundError(
            f"genotype file {p} does not exist; give a genotype.json or a search run directory "
            "that holds one"
        )
    return p


def _export_skip_reason(setting: Any) -> str | None:
    """Why model.onnx is not written (``None``: it is); ``true`` without the extra is an error."""
    if setting not in EXPORT_CHOICES:
        raise ValueError(f"retrain.export_onnx={setting!r} is invalid; valid: auto, true, false")
    missing = missing_export_modules()
    if setting is True and missing:
        raise RuntimeError(
            f"retrain.export_onnx=true needs {', '.join(missing)}: run {INSTALL_HINT}, "
            "or set retrain.export_onnx=auto"
        )
    if setting is False:
        return "skipped: retrain.export_onnx=false"
    if missing:
        return f"skipped: {', '.join(missing)} not installed ({INSTALL_HINT})"
    return None


def run_retrain(cfg: DictConfig) -> dict[str, Any]:
    """Fit on the full training pool, test on the test split, write ``result.json``."""
    start = time.perf_counter()
    rcfg = cfg.retrain
    skip_export = _export_skip_reason(rcfg.get("export_onnx", "auto"))
    genotype = load_genotype(genotype_file(cfg.get("genotype")))
    if rcfg.get("threads"):  # tiny nets on a busy CPU: extra OpenMP threads only contend
        torch.set_num_threads(int(rcfg.threads))
    if cfg.get("seed") is not None:
        pl.seed_everything(int(cfg.seed), workers=True)
    datamodule = instantiate(cfg.dataset)
    if getattr(datamodule, "train_split", "full") != "full":
        log.warning(
            "dataset.train_split=%s: the retrain sees only the search-train half",
            datamodule.train_split,
        )
    channels, height, width = datamodule.input_shape
    net = instantiate(rcfg.model)(
        genotype,
        in_channels=channels,
        num_classes=datamodule.num_classes,
        input_size=(height, width),
    )
    module = instantiate(rcfg.module)(
        net=net, num_classes=datamodule.num_classes, genotype=genotype
    )
    callbacks = instantiate_all(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = build_loggers(cfg)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    out = Path(trainer.default_root_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_genotype(genotype, out / "genotype.json")
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    sample = (channels, height, width)
    params, macs = count_params(net), count_macs(net, sample)
    log.info("retrain %s: %.3f M params, %.1f M MACs", genotype, params / 1e6, macs / 1e6)

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    train_time = time.perf_counter() - start
    tested = trainer.test(module, datamodule=datamodule, verbose=False)[0]

    timing_cfg = OmegaConf.to_container(rcfg.timing, resolve=True)
    batch = int(timing_cfg.pop("batch_size"))
    device = timing_cfg.pop("device") or str(trainer.strategy.root_device)
    timing = time_module(net, (batch, *sample), device=device, **timing_cfg)
    net.cpu()
    onnx = skip_export or export_onnx(net, (1, *sample), out / "model.onnx")
    result = {
        "genotype": genotype.to_dict(),
        "params_M": params / 1e6,
        "aux_params_M": (count_params(net, exclude=()) - params) / 1e6,
        "macs_M": macs / 1e6,
        "latency_ms": timing.median_ms,
        "latency": {**timing.to_dict(), "device": device, "batch_size": batch, **timing_cfg},
        "test_acc": float(tested["test/acc"]),
        "test_loss": float(tested["test/loss"]),
        "train_time_s": train_time,
        "wall_time_s": time.perf_counter() - start,
        "epochs": trainer.current_epoch,
        "seed": cfg.get("seed"),
        "dataset": cfg.dataset._target_,
        "onnx": onnx,
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    log.info(
        "test acc %.4f, %.3f M params, %.1f M MACs, latency %.3f ms (%s), wall %.1f s → %s",
        result["test_acc"],
        result["params_M"],
        result["macs_M"],
        result["latency_ms"],
        device,
        result["wall_time_s"],
        out / "result.json",
    )
    metrics = {"test/acc": result["test_acc"], "test/loss": result["test_loss"]}
    return {"metrics": metrics, "result": result, "output_dir": str(out)}
