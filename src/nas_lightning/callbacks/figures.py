"""Send a matplotlib figure to the active loggers (W&B image, TensorBoard figure)."""

from __future__ import annotations

import lightning.pytorch as pl
import matplotlib.pyplot as plt
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger


def log_figure(trainer: pl.Trainer, key: str, fig: plt.Figure) -> None:
    """Log ``fig`` under ``key`` (W&B at the global step, TensorBoard at the epoch); the CSV
    logger has no images, so the PNG on disk is the record there."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[fig], step=trainer.global_step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(key, fig, trainer.current_epoch, close=False)
