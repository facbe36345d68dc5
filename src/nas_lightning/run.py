"""``run(cfg)``: the whole search from a composed config. The only module that knows Hydra."""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def instantiate_all(cfg: DictConfig | None) -> list[Any]:
    """A node with ``_target_`` → one object; a dict of such nodes → a list (``null`` skipped)."""
    if not cfg:
        return []
    if "_target_" in cfg:
        return [instantiate(cfg)]
    return [instantiate(node) for node in cfg.values() if node is not None and "_target_" in node]


def objective(cfg: DictConfig | None, num_classes: int) -> dict[str, Any]:
    """The loss and metric factories of the ``objective`` group (``num_classes: null`` in a
    metric is filled with the dataset's)."""
    if not cfg:
        return {}
    metrics = {}
    for name, node in (cfg.get("metrics") or {}).items():
        fill = {"num_classes": num_classes} if node.get("num_classes", 0) is None else {}
        metrics[name] = instantiate(node, **fill)
    return {"loss": instantiate(cfg.loss), "metrics": metrics}


def space_inputs(space_cfg: DictConfig, datamodule: Any) -> dict[str, Any]:
    """What the space reads from the data: image shape and classes, or (token streams, whose
    ``input_shape`` is None) the vocabulary size. A space/data mismatch fails in one line."""
    recurrent = getattr(get_class(space_cfg._target_), "kind", None) == "recurrent"
    shape = datamodule.input_shape
    if recurrent != (shape is None):
        data = "token streams" if shape is None else "images"
        fix = "a text dataset (synthetic_text, ptb, wikitext2)" if recurrent else "space=rnn"
        raise ValueError(
            f"space {space_cfg._target_.rpartition('.')[2]} cannot read "
            f"{type(datamodule).__name__}, which gives {data}; use {fix}"
        )
    if shape is None:
        return {"vocab_size": datamodule.vocab_size}
    channels, height, width = shape
    return {
        "in_channels": channels,
        "num_classes": datamodule.num_classes,
        "input_size": (height, width),
    }


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule, pl.Trainer]:
    """Instantiate data → space (shaped by the data) → latency → algorithm → callbacks, loggers,
    trainer."""
    datamodule = instantiate(cfg.dataset)
    space = instantiate(cfg.space, **space_inputs(cfg.space, datamodule))
    extra = objective(cfg.get("objective"), datamodule.num_classes)
    if cfg.get("latency") is not None:  # hardware-aware algorithms take a latency model
        extra["latency"] = instantiate(cfg.latency)
    algo = instantiate(cfg.algo, space=space, **extra)
    callbacks = instantiate_all(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):  # else Lightning refuses the rich bar
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = instantiate_all(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, algo, trainer


def run(cfg: DictConfig) -> dict[str, Any]:
    """Fit the search and return its final metrics and genotype."""
    if cfg.get("seed") is not None:
        pl.seed_everything(int(cfg.seed), workers=True)
    if cfg.get("threads"):  # e.g. 1 for the recurrent space: thousands of tiny ops per window
        torch.set_num_threads(int(cfg.threads))
    datamodule, algo, trainer = build(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    log.info(
        "search space: %s, %d weights, %d architecture parameters",
        type(algo.space).__name__,
        sum(p.numel() for p in algo.weight_parameters()),
        sum(p.numel() for p in algo.arch_parameters()),
    )
    trainer.fit(algo, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    genotype = algo.export()
    log.info("final metrics: %s", {k: round(v, 4) for k, v in sorted(metrics.items())})
    return {
        "metrics": metrics,
        "genotype": genotype.to_dict(),
        "output_dir": trainer.default_root_dir,
    }
