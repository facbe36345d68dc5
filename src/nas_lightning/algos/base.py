"""The bilevel search loop shared by DARTS and ProxylessNAS.

Each training step receives ``{"train": (x, y), "val": (x, y)}``: the α-step runs on the val
batch (skipped during ``warmup_epochs``), then the w-step on the train batch. Manual
optimisation, so the two optimisers and their order stay explicit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from nas_lightning.algos.hypergrad import frozen
from nas_lightning.spaces.base import SearchSpace

OptimFactory = Callable[..., torch.optim.Optimizer]


class BilevelSearch(pl.LightningModule):
    """α on the val split, w on the train split; subclasses implement :meth:`arch_step`."""

    def __init__(
        self,
        space: SearchSpace,
        weight_optimizer: OptimFactory,
        arch_optimizer: OptimFactory,
        scheduler: Callable[..., Any] | None = None,
        grad_clip: float | None = 5.0,
        warmup_epochs: int = 0,
        num_classes: int | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.space = space
        arch = list(space.arch_parameters()) if hasattr(space, "arch_parameters") else []
        if not arch:
            raise ValueError(
                f"search space {type(space).__name__} has no architecture parameters "
                "(arch_parameters() is empty): there is nothing to search"
            )
        self._weight_optimizer, self._arch_optimizer = weight_optimizer, arch_optimizer
        self._scheduler = scheduler
        self.grad_clip, self.warmup_epochs = grad_clip, warmup_epochs
        n_cls = num_classes or space.num_classes
        self.train_acc = MulticlassAccuracy(n_cls, average="micro")
        self.val_acc = MulticlassAccuracy(n_cls, average="micro")

    # ---------------------------------------------------------------- architecture API
    # What callbacks, loggers and run() read: they never reach into the space for α.
    def arch_parameters(self) -> list[torch.nn.Parameter]:
        """The architecture parameters α (owned by the algorithm's mixing strategy)."""
        return list(self.space.arch_parameters())

    def weight_parameters(self) -> list[torch.nn.Parameter]:
        """The network weights w (everything that is not α)."""
        return list(self.space.weight_parameters())

    def export(self) -> Any:
        """The discrete architecture derived from the current α (a genotype)."""
        return self.space.export()

    def export_probs(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{group: {row_label: {op: probability}}}``: one heatmap per group."""
        return self.space.export_probs()

    def arch_entropy(self) -> Tensor:
        """Mean entropy of the architecture distribution over all decisions."""
        return self.space.arch_entropy()

    # ---------------------------------------------------------------- optimisers
    def configure_optimizers(self) -> Any:
        weights = self.weight_parameters()
        arch = self.arch_parameters()
        overlap = {id(p) for p in weights} & {id(p) for p in arch}
        if overlap:  # a space bug would silently train α with SGD otherwise
            raise RuntimeError(f"{len(overlap)} architecture parameters are also weights")
        opt_w = self._weight_optimizer(params=weights)
        opt_a = self._arch_optimizer(params=arch)
        if self._scheduler is None:
            return [opt_w, opt_a]
        return [opt_w, opt_a], [{"scheduler": self._scheduler(opt_w), "interval": "epoch"}]

    @property
    def weight_opt(self) -> torch.optim.Optimizer:
        return self.optimizers()[0].optimizer

    def weight_lr(self) -> float:
        return float(self.weight_opt.param_groups[0]["lr"])

    # ---------------------------------------------------------------- steps
    def forward(self, x: Tensor) -> Tensor:
        return self.space(x)

    def loss_fn(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y)

    def arch_step(self, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor]) -> Tensor:
        """Set ``.grad`` of the α and return the architecture loss (α optimiser steps after)."""
        raise NotImplementedError

    def on_arch_step_end(self) -> None:
        """Called right after the α optimiser step (ProxylessNAS rescales the updated α here)."""

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        train, val = tuple(batch["train"]), tuple(batch["val"])
        opt_w, opt_a = self.optimizers()
        if self.current_epoch >= self.warmup_epochs:
            opt_a.zero_grad(set_to_none=True)
            arch_loss = self.arch_step(train, val)
            opt_a.step()
            self.on_arch_step_end()
            self.log("arch/val_loss", arch_loss, on_step=False, on_epoch=True)
        opt_w.zero_grad(set_to_none=True)
        loss, logits = self.weight_step(train)
        if self.grad_clip:
            self.clip_gradients(
                opt_w, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm"
            )
        opt_w.step()
        self.train_acc(logits.detach(), train[1])
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss.detach()

    def weight_step(self, train: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Backward of the train loss into w only (α frozen: no α graph is built)."""
        x, y = train
        with frozen(self.space.arch_parameters()):
            logits = self.space(x)
            loss = self.loss_fn(logits, y)
            self.manual_backward(loss)
        return loss, logits

    def on_train_epoch_end(self) -> None:
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()
        self.log("arch/entropy", self.arch_entropy())
        self.log("arch/skip_count", float(self.export().ops().count("skip_connect")))
        self.log("train/lr", self.weight_lr())

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self.space(x)
        self.val_acc(logits, y)
        self.log("val/loss", self.loss_fn(logits, y), prog_bar=True)
        self.log("val/acc", self.val_acc, prog_bar=True)
