"""The step ``torch.optim.SGD`` would take next, computed without touching it or the weights.

Second-order DARTS evaluates L_val at the weights after one virtual optimiser step, so that step
must be the optimiser's own: ``torch.optim.SGD`` (torch 2.13, ``_single_tensor_sgd``) does, per
weight and with its own param group's options,

    g ← −g if maximize;  g ← g + λ·w;
    b ← g (no momentum buffer yet) or μ·buf + (1 − τ)·g;
    d ← g + μ·b (nesterov) or b (μ > 0) or g;  w' = w − lr·d

(λ weight decay, μ momentum, τ dampening). The foreach and fused kernels compute the same.
``d`` is affine in the train gradient, so ``∂w'/∂g = −gain·I`` with one scalar gain per weight
and the hypergradient's second-order term is ``−H (gain ⊙ v)``. Gradient clipping, which the
w-step applies before the real step, is not mirrored (as in DARTS).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def check_mirrorable(optimizer: torch.optim.Optimizer) -> None:
    """Refuse, in one line, an optimiser whose step the virtual step cannot reproduce."""
    if type(optimizer) is not torch.optim.SGD:
        raise ValueError(
            "algo.order=2 mirrors the weight optimiser's step in the virtual step; "
            f"{type(optimizer).__name__} is not supported (valid: torch.optim.SGD); "
            "use algo.order=1 or an SGD weight_optimizer"
        )


@dataclass(frozen=True)
class _Options:
    lr: float
    sign: float = 1.0  # −1 with maximize
    weight_decay: float = 0.0
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    buf: Tensor | None = None


class VirtualSGD:
    """SGD's next step per named weight: ``optimizer``'s (its groups' options and momentum
    buffers), or plain ``w − xi·g`` without one. ``xi``, if given, replaces every group's lr
    (DARTS' ``unrolled_xi``)."""

    def __init__(
        self,
        weights: dict[str, Tensor],
        optimizer: torch.optim.Optimizer | None = None,
        xi: float | None = None,
    ):
        if optimizer is None:
            if xi is None:
                raise ValueError("the virtual step needs xi or the weight optimiser")
            self.opts = {n: _Options(float(xi)) for n in weights}
            return
        check_mirrorable(optimizer)
        group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        self.opts = {}
        for name, p in weights.items():
            if id(p) not in group_of:
                raise ValueError(f"weight {name!r} is not in the weight optimiser's param groups")
            g = group_of[id(p)]
            self.opts[name] = _Options(
                lr=float(g["lr"] if xi is None else xi),
                sign=-1.0 if g.get("maximize", False) else 1.0,
                weight_decay=float(g["weight_decay"]),
                momentum=float(g["momentum"]),
                dampening=float(g["dampening"]),
                nesterov=bool(g["nesterov"]),
                buf=optimizer.state.get(p, {}).get("momentum_buffer"),
            )

    def step(self, name: str, w: Tensor, grad: Tensor) -> Tensor:
        """``w'`` from the train gradient (differentiable in ``grad``; ``w`` is a constant)."""
        o, w = self.opts[name], w.detach()
        g = o.sign * grad
        if o.weight_decay:
            g = g + o.weight_decay * w
        if o.momentum:
            b = g if o.buf is None else o.momentum * o.buf + (1 - o.dampening) * g
            g = g + o.momentum * b if o.nesterov else b
        return w - o.lr * g

    @torch.no_grad()
    def steps(self, names: list[str], ws: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        """:meth:`step` of every weight, as a few ``foreach`` kernels per group of weights with
        the same options (not differentiable: for the modes that detach ``w'``)."""
        groups: dict[tuple, list[int]] = {}
        for i, n in enumerate(names):
            o = self.opts[n]
            key = (o.lr, o.sign, o.weight_decay, o.momentum, o.dampening, o.nesterov)
            groups.setdefault((*key, o.buf is None), []).append(i)
        out: list[Tensor] = [ws[0]] * len(ws)
        for idx in groups.values():
            o = self.opts[names[idx[0]]]
            w, g = [ws[i] for i in idx], [grads[i] for i in idx]
            g = torch._foreach_mul(g, o.sign) if o.sign != 1.0 else g
            if o.weight_decay:
                g = torch._foreach_add(g, w, alpha=o.weight_decay)
            if o.momentum:
                if o.buf is None:
                    b = g
                else:
                    b = torch._foreach_mul([self.opts[names[i]].buf for i in idx], o.momentum)
                    torch._foreach_add_(b, g, alpha=1 - o.dampening)
                g = torch._foreach_add(g, b, alpha=o.momentum) if o.nesterov else b
            for i, t in zip(idx, torch._foreach_add(w, g, alpha=-o.lr), strict=True):
                out[i] = t
        return out

    def gain(self, name: str) -> float:
        """``−∂w'/∂grad``, a scalar: the weight of ``v`` in the Hessian-vector product."""
        o = self.opts[name]
        c = 1.0
        if o.momentum:
            c_buf = 1.0 if o.buf is None else 1 - o.dampening
            c = 1 + o.momentum * c_buf if o.nesterov else c_buf
        return o.lr * o.sign * c
