"""Draw the final genotype beside ``genotype.json`` when the fit ends (search or retrain)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import matplotlib.pyplot as plt
from lightning.pytorch.utilities import rank_zero_info

from nas_lightning.callbacks.figures import log_figure
from nas_lightning.diagram import genotype_figure


class CellDiagram(pl.Callback):
    """Write ``<dirpath>/genotype.png`` (cell diagram, or block strip for ProxylessNAS) from
    ``pl_module.export()`` at ``on_fit_end`` and log it as ``arch/genotype_diagram``."""

    def __init__(self, dirpath: str | None = None, filename: str = "genotype.png", dpi: int = 120):
        self.dirpath, self.filename, self.dpi = dirpath, filename, dpi
        self.path: Path | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        out = Path(self.dirpath or trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        fig = genotype_figure(pl_module.export())
        try:
            fig.savefig(out / self.filename, dpi=self.dpi)
            log_figure(trainer, "arch/genotype_diagram", fig)
        finally:
            plt.close(fig)
        self.path = out / self.filename
        rank_zero_info(f"Genotype diagram written to {self.path}")
