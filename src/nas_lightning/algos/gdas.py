"""GDAS (Dong & Yang, CVPR 2019): differentiable sampling of one op per decision.

Every training forward draws a hard Gumbel-softmax sample per decision and runs only the sampled
op (:class:`~nas_lightning.algos.mixing.GumbelMixing`), so a step costs about what the single-path
network costs; the α-step is first order, through the straight-through estimator. The
temperature anneals linearly from ``tau_max`` to ``tau_min`` over the search, as in the authors'
code. Validation runs the argmax path; the genotype is derived as in DARTS (top-k per node, never
``zero``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from nas_lightning.algos import hypergrad
from nas_lightning.algos.base import BilevelSearch
from nas_lightning.algos.hypergrad import frozen
from nas_lightning.algos.mixing import GumbelMixing


class GdasSearch(BilevelSearch):
    """``tau_max → tau_min`` linearly over ``trainer.max_epochs`` (epoch 0 at ``tau_max``)."""

    def __init__(self, *args: Any, tau_max: float = 10.0, tau_min: float = 0.1, **kwargs: Any):
        if not 0 < tau_min <= tau_max:
            raise ValueError(
                f"algo.tau_min={tau_min} and algo.tau_max={tau_max}: need 0 < tau_min <= tau_max"
            )
        self.tau_max, self.tau_min = float(tau_max), float(tau_min)
        super().__init__(*args, **kwargs)

    def make_mixing(self) -> GumbelMixing:
        return GumbelMixing(tau=self.tau_max)

    @property
    def generator(self):
        return self.mixing.generator

    @generator.setter
    def generator(self, value) -> None:
        self.mixing.generator = value

    def tau_at(self, epoch: int, max_epochs: int) -> float:
        if max_epochs <= 1:
            return self.tau_min
        return self.tau_max - (self.tau_max - self.tau_min) * epoch / (max_epochs - 1)

    def on_train_epoch_start(self) -> None:
        self.mixing.tau = self.tau_at(self.current_epoch, int(self.trainer.max_epochs or 1))
        self.log("arch/tau", self.mixing.tau)

    def arch_step(self, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor]) -> Tensor:
        arch = self.arch_parameters()
        with frozen(self.weight_parameters()):
            grads, loss = hypergrad.first_order_grad(self.space, arch, val, self.arch_loss_fn)
        loss = loss / self.loss_scale()
        for p, g in zip(arch, grads, strict=True):
            p.grad = None if g is None else g.detach()
        return loss

    def diagnostics(self) -> dict[str, float]:
        return {"arch/skip_count": float(self.export().ops().count("skip_connect"))}


__all__ = ["GdasSearch"]
