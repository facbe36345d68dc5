"""Train a derived network from scratch: a plain LightningModule with automatic optimisation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

OptimFactory = Callable[..., torch.optim.Optimizer]


class RetrainModule(pl.LightningModule):
    """Cross-entropy (optionally label-smoothed) plus ``auxiliary_weight`` × the auxiliary
    head's loss, gradient-norm clipping, and drop-path whose probability grows linearly from 0
    to ``drop_path_prob`` over the epochs (``drop_path_prob · epoch / max_epochs``, as in the
    DARTS code). ``export()`` returns the genotype, so genotype callbacks work here too.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimFactory,
        scheduler: Callable[..., Any] | None = None,
        grad_clip: float | None = 5.0,
        auxiliary_weight: float = 0.4,
        drop_path_prob: float = 0.0,
        label_smoothing: float = 0.0,
        num_classes: int = 10,
        genotype: Any = None,
    ):
        super().__init__()
        for name, value in (
            ("drop_path_prob", drop_path_prob),
            ("label_smoothing", label_smoothing),
        ):
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"{name}={value!r} is invalid; it must lie in [0, 1)")
        if auxiliary_weight < 0:
            raise ValueError(f"auxiliary_weight={auxiliary_weight!r} is invalid; it must be >= 0")
        self.net, self.genotype = net, genotype
        self._optimizer, self._scheduler = optimizer, scheduler
        self.grad_clip, self.auxiliary_weight = grad_clip, float(auxiliary_weight)
        self.drop_path_prob, self.label_smoothing = float(drop_path_prob), float(label_smoothing)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def export(self) -> Any:
        """The genotype this network was built from."""
        return self.genotype

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def loss_fn(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def configure_optimizers(self) -> Any:
        opt = self._optimizer(params=self.net.parameters())
        if self._scheduler is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self._scheduler(opt)}}

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        """``grad_clip`` (a Trainer's ``gradient_clip_val``, when set, takes precedence)."""
        clip = gradient_clip_val or self.grad_clip
        if clip:
            algorithm = gradient_clip_algorithm or "norm"
            self.clip_gradients(
                optimizer, gradient_clip_val=clip, gradient_clip_algorithm=algorithm
            )

    def current_drop_path(self) -> float:
        """The schedule's value at the current epoch (0 at the first epoch)."""
        epochs = self.trainer.max_epochs
        return self.drop_path_prob * self.current_epoch / epochs if epochs and epochs > 0 else 0.0

    def on_train_epoch_start(self) -> None:
        if hasattr(self.net, "drop_path_prob"):
            self.net.drop_path_prob = self.current_drop_path()
            self.log("train/drop_path_prob", self.net.drop_path_prob)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        if hasattr(self.net, "forward_with_aux"):
            logits, aux = self.net.forward_with_aux(x)
        else:
            logits, aux = self.net(x), None
        loss = self.loss_fn(logits, y)
        if aux is not None and self.auxiliary_weight > 0:
            loss = loss + self.auxiliary_weight * self.loss_fn(aux, y)
        self.train_acc(logits.detach(), y)
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/lr", float(self.optimizers().param_groups[0]["lr"]))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.test_acc(logits, y)
        self.log("test/loss", F.cross_entropy(logits, y))
        self.log("test/acc", self.test_acc)
