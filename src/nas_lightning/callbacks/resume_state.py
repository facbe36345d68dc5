"""What a checkpoint needs beyond Lightning's own state for a resume to continue exactly.

- The random number generators (torch CPU and CUDA, numpy, Python): ProxylessNAS samples paths
  from the global torch RNG, augmentations draw from it too. They are captured when the
  checkpoint is written and put back when training starts again (``on_train_start``: after
  the model was built and the checkpoint restored, which both consume random numbers), so the
  resumed run draws what the uninterrupted run drew after that checkpoint.
- The run's config (``nas_lightning_config``), so a resume can name the settings in which a
  checkpoint differs from the run it is given to.

Everything is stored as tensors and plain data (``torch.load(weights_only=True)`` reads it).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

CONFIG_KEY = "nas_lightning_config"


def capture_rng() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


class ResumeState(pl.Callback):
    """Save RNG states and the run config in every checkpoint; restore the RNGs on resume."""

    def __init__(self, config: Mapping[str, Any] | None = None):
        self.config = dict(config) if config is not None else None
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": capture_rng()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rng")

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.config is not None:
            checkpoint[CONFIG_KEY] = self.config

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            restore_rng(self._pending)
            self._pending = None
