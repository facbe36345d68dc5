"""DARTS (Liu et al. 2019): first order (ξ = 0) or second order (unrolled) α-steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from nas_lightning.algos import hypergrad
from nas_lightning.algos.base import BilevelSearch
from nas_lightning.algos.distributed import all_reduce_mean
from nas_lightning.algos.hypergrad import frozen
from nas_lightning.ops.bn import running_stats_frozen


class DartsSearch(BilevelSearch):
    """``order=1``: ∇α L_val(w, α). ``order=2``: the unrolled hypergradient (see hypergrad).

    ``unrolled_xi=None`` uses the weight optimiser's current learning rate, as the DARTS code
    does; the virtual step is the weight optimiser's own (torch.optim.SGD only, checked when
    training starts); ``hvp`` picks how the Hessian-vector product is formed; ``fd_r`` is the
    numerator of the finite-difference step ``ε = fd_r / ‖v‖`` (0.01 in the paper).
    ``clip_virtual_step``: the virtual step takes the gradient clipped to ``grad_clip`` as the
    real w-step does (the DARTS rnn architect's ``clip_coef``; its CNN architect does not clip),
    at the cost of one more forward and backward of the train batch.
    """

    def __init__(
        self,
        *args: Any,
        order: int = 1,
        unrolled_xi: float | None = None,
        hvp: str = "exact",
        fd_r: float = 0.01,
        clip_virtual_step: bool = False,
        fused: bool | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        if fused not in (None, True, False):
            raise ValueError(f"algo.fused={fused!r} is invalid; valid choices: null, true, false")
        self.mixing.fused = fused  # null: fused kernels where they pay; the same function
        if order not in (1, 2):
            raise ValueError(f"algo.order={order!r} is invalid; valid choices: 1, 2")
        if hvp not in hypergrad.HVP_MODES:
            raise ValueError(
                f"algo.hvp={hvp!r} is invalid; valid choices: {', '.join(hypergrad.HVP_MODES)}"
            )
        if fd_r <= 0:
            raise ValueError(f"algo.fd_r={fd_r} must be > 0")
        self.order, self.unrolled_xi, self.hvp, self.fd_r = order, unrolled_xi, hvp, fd_r
        self.clip_virtual_step = bool(clip_virtual_step)

    def diagnostics(self) -> dict[str, float]:
        """Skip connections in the derived genotype: the DARTS collapse signal (Zela et al.)."""
        return {"arch/skip_count": float(self.export().ops().count("skip_connect"))}

    def on_train_start(self) -> None:
        if self.order == 2:  # fail before any epoch, not at the first α-step after warm-up
            hypergrad.check_mirrorable(self.weight_opt)

    def arch_step(self, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor]) -> Tensor:
        space = self.space
        arch = self.arch_parameters()
        if self.order == 1:
            with frozen(space.weight_parameters()):
                grads, loss = hypergrad.first_order_grad(space, arch, val, self.arch_loss_fn)
                loss = loss / self.loss_scale()
        else:  # the virtual step mirrors the weight optimiser's real one (hypergrad.VirtualSGD)
            grads, loss = hypergrad.unrolled_grad(
                space,
                arch,
                dict(space.named_weight_parameters()),
                train,
                val,
                self._clipped_train_loss(train) if self.clip_virtual_step else self.loss_fn,
                xi=self.unrolled_xi,
                hvp=self.hvp,
                optimizer=self.weight_opt,
                fd_r=self.fd_r,
                loss_scale=self.loss_scale(),
                reduce=all_reduce_mean,
            )
        for p, g in zip(arch, grads, strict=True):
            p.grad = None if g is None else g.detach()
        return loss

    def _clipped_train_loss(self, train: tuple[Tensor, Tensor]) -> Callable[..., Tensor]:
        """The loss with the train batch's term scaled by ``min(1, grad_clip / ‖∇w L_train‖)``:
        its w-gradient is then the clipped one, so the virtual step (and the Hessian term, scaled
        alike, as in the DARTS rnn code) follows the w-step the optimiser really takes."""
        coef = 1.0
        if self.grad_clip:
            x, y = train
            with frozen(self.arch_parameters()), running_stats_frozen(self.space):
                loss = self.loss_fn(self.space(x), y)
                grads = torch.autograd.grad(loss, self.weight_parameters(), allow_unused=True)
            grads = [g for g in grads if g is not None]
            norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
            coef = min(1.0, self.grad_clip / max(norm, 1e-12))
        base, train_y = self.loss_fn, train[1]

        def loss(logits: Tensor, y: Tensor) -> Tensor:
            return base(logits, y) * coef if y is train_y else base(logits, y)

        return loss
