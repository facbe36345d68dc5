"""``arch/hessian_eig``: the dominant eigenvalue of ∇²_α L_val every few epochs (opt-in).

RobustDARTS (Zela et al. 2020) found that this eigenvalue grows before DARTS collapses. It is
measured on one fixed validation batch (the first one seen), with the weights frozen, in the mode
the α-step uses (training: BatchNorm batch statistics), and changes nothing: α are copied, the
BatchNorm running statistics are private clones (``torch.func.functional_call``), no ``.grad``
is touched. Cost: one forward, one backward and up to ``iters`` double backwards per
measurement, about ``iters`` exact-HVP α-steps.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.func import functional_call

from nas_lightning.algos.hessian import dominant_eigenvalue
from nas_lightning.algos.hypergrad import frozen


class HessianEigenvalue(pl.Callback):
    """Every ``every_n_epochs`` training epochs (``None``: never) log ``arch/hessian_eig``,
    by power iteration (``iters`` products at most, relative tolerance ``tol``, start vector
    from ``seed``)."""

    def __init__(
        self, every_n_epochs: int | None = None, iters: int = 50, tol: float = 1e-3, seed: int = 0
    ):
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ValueError(
                f"callbacks.hessian_eig.every_n_epochs={every_n_epochs} is invalid; "
                "give an integer >= 1, or null to switch it off"
            )
        if iters < 1:
            raise ValueError(f"callbacks.hessian_eig.iters={iters} is invalid; it must be >= 1")
        self.every_n_epochs, self.iters, self.tol, self.seed = every_n_epochs, iters, tol, seed
        self.batch: tuple[Tensor, Tensor] | None = None

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.every_n_epochs and self.batch is None:
            self.batch = (batch[0], batch[1])  # the first validation batch, kept for every epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.every_n_epochs or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        if self.batch is None:
            rank_zero_warn("arch/hessian_eig needs a validation batch; none was seen: skipped")
            return
        value, _ = self.measure(pl_module, *self.batch)
        pl_module.log("arch/hessian_eig", value)

    def measure(self, pl_module: pl.LightningModule, x: Tensor, y: Tensor) -> tuple[float, int]:
        """(dominant eigenvalue of ∇²_α loss_fn(pl_module(x), y), products used)."""
        x, y = x.clone().to(pl_module.device), y.clone().to(pl_module.device)  # (inference mode)
        arch = pl_module.arch_parameters()
        by_id = {id(p): n for n, p in pl_module.named_parameters()}
        arch_names = [by_id[id(a)] for a in arch]
        buffers = dict(pl_module.named_buffers())

        def loss_of_alpha(alphas: list[Tensor]) -> Tensor:
            state = {n: b.clone() for n, b in buffers.items()}  # BatchNorm updates these only
            state.update(zip(arch_names, alphas, strict=True))
            return pl_module.loss_fn(functional_call(pl_module, state, (x,)), y)

        generator = torch.Generator().manual_seed(self.seed)
        with frozen(pl_module.weight_parameters()):
            return dominant_eigenvalue(loss_of_alpha, arch, self.iters, self.tol, generator)
