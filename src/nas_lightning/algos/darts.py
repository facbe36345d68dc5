"""DARTS (Liu et al. 2019): first order (ξ = 0) or second order (unrolled) α-steps."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from nas_lightning.algos import hypergrad
from nas_lightning.algos.base import BilevelSearch
from nas_lightning.algos.distributed import all_reduce_mean
from nas_lightning.algos.hypergrad import frozen


class DartsSearch(BilevelSearch):
    """``order=1``: ∇α L_val(w, α). ``order=2``: the unrolled hypergradient (see hypergrad).

    ``unrolled_xi=None`` uses the weight optimiser's current learning rate, as the DARTS code
    does; the virtual step is the weight optimiser's own (torch.optim.SGD only, checked when
    training starts); ``hvp`` picks how the Hessian-vector product is formed; ``fd_r`` is the
    numerator of the finite-difference step ``ε = fd_r / ‖v‖`` (0.01 in the paper).
    """

    def __init__(
        self,
        *args: Any,
        order: int = 1,
        unrolled_xi: float | None = None,
        hvp: str = "exact",
        fd_r: float = 0.01,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        if order not in (1, 2):
            raise ValueError(f"algo.order={order!r} is invalid; valid choices: 1, 2")
        if hvp not in hypergrad.HVP_MODES:
            raise ValueError(
                f"algo.hvp={hvp!r} is invalid; valid choices: {', '.join(hypergrad.HVP_MODES)}"
            )
        if fd_r <= 0:
            raise ValueError(f"algo.fd_r={fd_r} must be > 0")
        self.order, self.unrolled_xi, self.hvp, self.fd_r = order, unrolled_xi, hvp, fd_r

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
                self.loss_fn,
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
