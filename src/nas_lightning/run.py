"""``run(cfg)``: the whole search from a composed config. With ``__main__`` the only module
that knows Hydra; run-level logic (resume, checks, errors) lives in ``nas_lightning.runtime``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from nas_lightning.callbacks import EpochSummary, ResumeState, ScheduleHorizon
from nas_lightning.runtime import settings_check
from nas_lightning.runtime.console import route_lightning_logging
from nas_lightning.runtime.resume_plan import plan_resume, prepare
from nas_lightning.runtime.sweep import sweep_identity

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


def config_record(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as plain data, interpolations unresolved (as ``.hydra/config.yaml``)."""
    record = OmegaConf.to_container(cfg, resolve=False)
    record.pop("hydra", None)
    return record


def _choice(cfg: DictConfig, group: str) -> str:
    """``darts`` for ``algo=darts`` (Hydra's choice when known, else the target's class)."""
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get(group)
        if choice:
            return str(choice)
    return str(cfg[group].get("_target_", "?")).rsplit(".", 1)[-1]


def build_loggers(cfg: DictConfig) -> list[Any]:
    """The ``logger`` group's loggers. W&B gets its group and tags from Hydra: a multirun is one
    group (``<task_name>/<sweep dir>``, runs ``<task_name>/<job>``), the config-group choices on
    the command line are tags (``algo=proxyless``); ``logger.group`` set by hand wins,
    ``logger.tags`` are kept."""
    node = cfg.get("logger")
    if not node or not str(node.get("_target_", "")).endswith("WandbLogger"):
        return instantiate_all(node)
    if not HydraConfig.initialized():
        return instantiate_all(node)
    hc = HydraConfig.get()
    ident = sweep_identity(
        hc.runtime.output_dir, cfg.task_name, list(hc.overrides.task), list(hc.runtime.choices)
    )
    extra: dict[str, Any] = {"tags": [*(node.get("tags") or []), *ident["tags"]]}
    if hc.mode == RunMode.MULTIRUN:  # runs named <task_name>/<job> within the sweep's group
        extra["name"] = f"{node.get('name') or cfg.task_name}/{Path(hc.runtime.output_dir).name}"
        extra["group"] = node.get("group") or ident["group"]
    return [instantiate(node, **extra)]


def run_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """On whatever ``callbacks=`` says: exact resume (RNG, config), the LR horizon rule on
    resume, one log line per epoch."""
    return [ResumeState(config_record(cfg)), ScheduleHorizon(), EpochSummary()]


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
        extra["latency"] = build_latency(cfg, space)
    algo = instantiate(cfg.algo, space=space, **extra)
    callbacks = instantiate_all(cfg.get("callbacks")) + run_callbacks(cfg)
    if not cfg.trainer.get("enable_progress_bar", True):  # else Lightning refuses the rich bar
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = build_loggers(cfg)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, algo, trainer


def build_latency(cfg: DictConfig, space: Any) -> Any:
    """The latency model, refused now (not mid-epoch) if the algorithm takes none or a
    measured table lacks an op of this space (another space or input size)."""
    settings_check.check_takes_latency(
        get_class(cfg.algo._target_), _choice(cfg, "algo"), _choice(cfg, "latency")
    )
    latency = instantiate(cfg.latency)
    if hasattr(space, "latency_specs"):
        from nas_lightning.latency.sampling import space_ops

        settings_check.check_latency_covers(latency, space_ops(space))
    return latency


def preflight(cfg: DictConfig) -> None:
    """Settings that cannot work or make the search pointless, refused before building."""
    settings_check.check_epochs(
        OmegaConf.to_container(cfg.trainer, resolve=True),
        OmegaConf.to_container(cfg.algo, resolve=True),
    )
    optimisers = {
        f"algo.{key}": (instantiate(node), OmegaConf.to_container(node, resolve=True))
        for key, node in cfg.algo.items()
        if key.endswith("optimizer") and isinstance(node, DictConfig) and "_target_" in node
    }
    settings_check.check_optimizers(optimisers)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Fit the search (or continue it from ``ckpt_path``) and return its metrics and genotype."""
    route_lightning_logging()
    preflight(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(int(cfg.seed), workers=True)
    if cfg.get("threads"):  # e.g. 1 for the recurrent space: thousands of tiny ops per window
        torch.set_num_threads(int(cfg.threads))
    run_dir = Path(cfg.paths.output_dir)
    task_dir = Path(cfg.paths.log_dir) / str(cfg.task_name)
    resume = plan_resume(cfg.get("ckpt_path"), config_record(cfg), task_dir, run_dir)
    datamodule, algo, trainer = build(cfg)
    if resume is not None and prepare(resume, algo, config_record(cfg), cfg.trainer.max_epochs):
        algo.load_state_dict(resume.checkpoint["state_dict"])
        log.info("genotype: %s", algo.export())
        return {"metrics": {}, "genotype": algo.export().to_dict(), "output_dir": str(run_dir)}
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    log.info(
        "search space: %s, %d weights, %d architecture parameters",
        type(algo.space).__name__,
        sum(p.numel() for p in algo.weight_parameters()),
        sum(p.numel() for p in algo.arch_parameters()),
    )
    trainer.fit(algo, datamodule=datamodule, ckpt_path=resume.path if resume else None)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    genotype = algo.export()
    log.info("final metrics: %s", {k: round(v, 4) for k, v in sorted(metrics.items())})
    return {
        "metrics": metrics,
        "genotype": genotype.to_dict(),
        "output_dir": trainer.default_root_dir,
    }
