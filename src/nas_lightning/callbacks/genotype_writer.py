"""Derive the genotype every epoch and keep it on disk (``genotype.json`` + history)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temp file + rename so a crash never leaves a half-written genotype."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class GenotypeWriter(pl.Callback):
    """Append ``{"epoch", "step", "genotype"}`` to ``genotypes.jsonl`` and rewrite
    ``genotype.json`` at each epoch end; log it as text; print the final one when fit ends.
    """

    def __init__(self, dirpath: str | None = None):
        self.dirpath = dirpath
        self.last: dict | None = None

    def _dir(self, trainer: pl.Trainer) -> Path:
        return Path(self.dirpath or trainer.default_root_dir)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        genotype = pl_module.export()
        record = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "genotype": genotype.to_dict(),
        }
        out = self._dir(trainer)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "genotypes.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        _atomic_write(out / "genotype.json", json.dumps(genotype.to_dict(), indent=2) + "\n")
        self.last = record
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_text(
                    key="arch/genotype",
                    columns=["epoch", "genotype"],
                    data=[[trainer.current_epoch, str(genotype)]],
                )
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("arch/genotype", str(genotype), trainer.current_epoch)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            rank_zero_info(f"Final genotype: {pl_module.export()}")
            rank_zero_info(f"Written to {self._dir(trainer) / 'genotype.json'}")
