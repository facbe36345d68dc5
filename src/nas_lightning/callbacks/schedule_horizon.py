"""On resume, rebuild the learning-rate schedule for this run's horizon.

Lightning restores a scheduler's whole state, settings included: a 1-epoch run resumed with
``trainer.max_epochs=4`` keeps cosine ``T_max=1`` and its lr swings 0.025 → 0.001 → 0.025.
The rule here: the schedule's *settings* (``T_max``, ``eta_min``, …) come from this run's
config, only its *progress* (``last_epoch``) from the checkpoint, and the lr is set to the
schedule's closed form at the restored epoch — for cosine
``eta_min + (base_lr - eta_min)·(1 + cos(π·epoch/T_max))/2`` with the new ``T_max``.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl

log = logging.getLogger(__name__)
PROGRESS = ("last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "_is_initial")


class ScheduleHorizon(pl.Callback):
    def __init__(self) -> None:
        self._fresh: list[dict[str, Any]] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after configure_optimizers, before the checkpoint's scheduler state is loaded
        self._fresh = [dict(c.scheduler.state_dict()) for c in trainer.lr_scheduler_configs]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path is None:
            return
        for config, fresh in zip(trainer.lr_scheduler_configs, self._fresh, strict=False):
            sched = config.scheduler
            restored = sched.state_dict()
            changed = {
                k: (restored.get(k), v)
                for k, v in fresh.items()
                if k not in PROGRESS and k != "base_lrs" and restored.get(k) != v
            }
            closed_form = getattr(sched, "_get_closed_form_lr", None)
            if not changed:
                continue
            if closed_form is None:
                log.warning(
                    "%s settings changed on resume (%s) but it has no closed form: kept the "
                    "checkpoint's schedule",
                    type(sched).__name__,
                    changed,
                )
                continue
            sched.__dict__.update({k: new for k, (_, new) in changed.items()})
            lrs = [float(lr) for lr in closed_form()]
            for group, lr in zip(sched.optimizer.param_groups, lrs, strict=True):
                group["lr"] = lr
            sched._last_lr = lrs
            log.info(
                "LR schedule rebuilt for this run's horizon: %s %s; lr at epoch %d = %.6g",
                type(sched).__name__,
                ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items()),
                sched.last_epoch,
                lrs[0],
            )
