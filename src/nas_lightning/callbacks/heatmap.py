"""α-softmax heatmaps: one figure per decision group (normal/reduce cell, or blocks)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger  # noqa: E402


def probs_figure(title: str, table: dict[str, dict[str, float]]) -> plt.Figure:
    """Rows = edges/blocks, columns = candidate ops, cells = probabilities (printed)."""
    rows = list(table)
    cols = list(next(iter(table.values())))
    data = np.array([[table[r][c] for c in cols] for r in rows])
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(cols), 1.2 + 0.38 * len(rows)))
    # colour range = the data's range, so early (near-uniform) α still shows its ordering
    lo, hi = float(data.min()), float(data.max())
    im = ax.imshow(data, cmap="viridis", vmin=lo, vmax=max(hi, lo + 1e-6), aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    threshold = (lo + hi) / 2
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(
                j,
                i,
                f"{data[i, j]:.3f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if data[i, j] > threshold else "white",
            )
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


class AlphaHeatmap(pl.Callback):
    """Save ``heatmaps/epoch_XXX_<group>.png`` every ``every_n_epochs`` and on the last epoch,
    and log it as an image to W&B / a figure to TensorBoard (the CSV logger keeps the PNG only).
    """

    def __init__(self, dirpath: str | None = None, every_n_epochs: int = 1, dpi: int = 100):
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs={every_n_epochs} must be >= 1")
        self.dirpath, self.every_n_epochs, self.dpi = dirpath, every_n_epochs, dpi

    def _dir(self, trainer: pl.Trainer) -> Path:
        return Path(self.dirpath or Path(trainer.default_root_dir) / "heatmaps")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = epoch + 1 >= (trainer.max_epochs or 0) or trainer.should_stop
        if (epoch + 1) % self.every_n_epochs and not last:
            return
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        out = self._dir(trainer)
        out.mkdir(parents=True, exist_ok=True)
        for group, table in pl_module.export_probs().items():
            fig = probs_figure(f"softmax(α) {group} — epoch {epoch}", table)
            fig.savefig(out / f"epoch_{epoch:03d}_{group}.png", dpi=self.dpi)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(
                        key=f"arch/heatmap_{group}", images=[fig], step=trainer.global_step
                    )
                elif isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_figure(f"arch/heatmap_{group}", fig, epoch)
            plt.close(fig)
