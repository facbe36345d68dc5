"""α-softmax heatmaps: one figure per decision group (normal/reduce cell, or blocks)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import lightning.pytorch as pl
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from nas_lightning.callbacks.figures import log_figure  # noqa: E402
from nas_lightning.genotype_views import picks  # noqa: E402


def probs_figure(
    title: str,
    table: dict[str, dict[str, float]],
    picked: Collection[tuple[str, str]] = (),
) -> plt.Figure:
    """Rows = edges/blocks, columns = candidate ops, cells = probabilities (printed).

    The colour scale is anchored, not stretched to the data: a diverging map centred (white) at
    the uniform value 1/|O| (|O| = columns), blue below it and red above, from 0 to 1. A
    near-uniform α therefore stays pale, and the title prints the actual min–max spread.
    ``picked`` ``(row, op)`` cells (the derived genotype's choices) are outlined in black.
    """
    rows = list(table)
    cols = list(next(iter(table.values())))
    data = np.array([[table[r][c] for c in cols] for r in rows])
    uniform = 1.0 / len(cols)
    norm = TwoSlopeNorm(vcenter=uniform, vmin=0.0, vmax=1.0) if len(cols) > 1 else None
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(cols), 1.5 + 0.38 * len(rows)))
    im = ax.imshow(
        data,
        cmap="RdBu_r",
        norm=norm,
        vmin=None if norm else 0.0,
        vmax=None if norm else 1.0,
        aspect="auto",
    )
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(cols)):
            strong = abs(float(im.norm(data[i, j])) - 0.5) > 0.3  # dark cell: white text
            ax.text(
                j,
                i,
                f"{data[i, j]:.3f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if strong else "black",
            )
    for row, op in picked:
        if row in table and op in cols:
            ax.add_patch(
                Rectangle(
                    (cols.index(op) - 0.5, rows.index(row) - 0.5),
                    1,
                    1,
                    fill=False,
                    edgecolor="black",
                    linewidth=2.2,
                    gid=f"pick:{row}:{op}",
                )
            )
    lo, hi = float(data.min()), float(data.max())
    ax.set_title(
        f"{title}\nspread {lo:.4f}–{hi:.4f} (uniform 1/{len(cols)} = {uniform:.4f}); "
        "outlined: derived genotype",
        fontsize=9,
    )
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
        chosen = picks(pl_module.export())
        for group, table in pl_module.export_probs().items():
            fig = probs_figure(f"softmax(α) {group} — epoch {epoch}", table, chosen.get(group, ()))
            fig.savefig(out / f"epoch_{epoch:03d}_{group}.png", dpi=self.dpi)
            log_figure(trainer, f"arch/heatmap_{group}", fig)
            plt.close(fig)
