"""The second, Lightning-based baseline: the reference DARTS model driven by ``trainer.fit``.

It wraps the same :mod:`reference_darts` model and architect in a minimal LightningModule with
manual optimisation, so what it adds over the plain reference is the Trainer's per-step
overhead (hooks, ``manual_backward``, ``clip_gradients``, LightningOptimizer), the cost a
Lightning DARTS port pays on top of the original loop. Step times come from a callback.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import lightning.pytorch as pl
import reference_darts as ref
from torch import Tensor
from torch.utils.data import DataLoader


class LitReference(pl.LightningModule):
    def __init__(self, model: ref.Network, unrolled: bool):
        super().__init__()
        self.automatic_optimization = False
        self.model, self.unrolled = model, unrolled
        self.architect = ref.Architect(model)

    def configure_optimizers(self) -> Any:
        return ref.make_weight_optimizer(self.model)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        w_opt = self.optimizers()
        train, val = batch["train"], batch["val"]
        lr = w_opt.optimizer.param_groups[0]["lr"]
        self.architect.step(train, val, lr, w_opt.optimizer, self.unrolled)
        w_opt.zero_grad()
        loss = self.model.loss(*train)
        self.manual_backward(loss)
        self.clip_gradients(w_opt, gradient_clip_val=5.0, gradient_clip_algorithm="norm")
        w_opt.step()
        return loss.detach()


class StepTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self._t0)


def lightning_step_times(
    model: ref.Network,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    unrolled: bool,
    n: int,
) -> list[float]:
    """Times of ``n`` fit steps (after one warm-up step) over a fixed batch."""
    timer = StepTimer()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banner on stderr
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[timer],
    )
    # batch_size=None: each item is already a batch ({"train": (x, y), "val": (x, y)})
    loader = DataLoader(
        [{"train": train, "val": val}] * (n + 1), batch_size=None, collate_fn=lambda b: b
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(LitReference(model, unrolled), train_dataloaders=loader)
    return timer.times[1:]
