"""One log line per epoch, so the console and ``search.log`` keep the history that a
progress bar, redrawn each epoch, does not."""

from __future__ import annotations

import logging

import lightning.pytorch as pl

log = logging.getLogger("nas_lightning.epoch")
METRICS = ("train/loss", "train/acc", "val/loss", "val/acc")


def summary_line(trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
    """``epoch 3/10 train/loss 0.512 … arch/entropy 2.07 skip_connect 2 lr 0.0213``."""
    metrics = trainer.callback_metrics
    horizon = f"/{trainer.max_epochs}" if (trainer.max_epochs or -1) > 0 else ""
    parts = [f"epoch {trainer.current_epoch + 1}{horizon}"]
    parts += [f"{k} {float(metrics[k]):.4f}" for k in METRICS if k in metrics]
    parts.append(f"arch/entropy {float(pl_module.arch_entropy()):.4f}")
    parts.append(f"skip_connect {pl_module.export().ops().count('skip_connect')}")
    if trainer.optimizers:  # the lr this epoch ran with (the scheduler steps after this hook)
        parts.append(f"lr {trainer.optimizers[0].param_groups[0]['lr']:.4g}")
    return "  ".join(parts)


class EpochSummary(pl.Callback):
    """Train/val loss and accuracy, α entropy and the genotype's skip count, every epoch."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            log.info(summary_line(trainer, pl_module))
