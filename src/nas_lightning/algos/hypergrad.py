"""DARTS architecture gradients, as plain functions (no Lightning) so they can be tested.

Second order (Liu et al. 2019, eq. 7-8): with the virtual step
``w' = w − ξ (∇w L_train(w, α) + μ·buf + λ·w)`` (the SGD step the weight optimiser would take,
momentum ``μ`` and weight decay ``λ`` included), the hypergradient is
``∇α L_val(w', α) − ξ · H v`` with ``v = ∇w' L_val(w', α)`` and ``H = ∇²_{α,w} L_train(w, α)``.

``H v`` modes: ``exact`` (double backward, ∇α⟨∇w L_train, v⟩), ``finite_difference`` (the
paper's central difference ``(∇α L_train(w + εv) − ∇α L_train(w − εv)) / (2ε)``, ``ε = r/‖v‖``),
and ``full`` (autograd through the whole virtual step; a reference for tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.func import functional_call

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
HVP_MODES = ("exact", "finite_difference", "full")
Grads = list[Tensor | None]


@contextmanager
def frozen(params: Iterable[Tensor]) -> Iterator[None]:
    """Temporarily mark parameters as constants, so autograd neither saves nor computes for them."""
    params = [p for p in params if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _loss(model: nn.Module, params: dict[str, Tensor], batch: Batch, loss_fn: LossFn) -> Tensor:
    # Private buffer copies: the extra forwards must not touch BatchNorm running statistics.
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    x, y = batch
    return loss_fn(functional_call(model, {**params, **buffers}, (x,)), y)


def first_order_grad(
    model: nn.Module, arch: Sequence[Tensor], batch: Batch, loss_fn: LossFn
) -> tuple[Grads, Tensor]:
    """``∇α L_val(w, α)`` (ξ = 0). Returns (grads, loss); unused α get ``None``."""
    x, y = batch
    loss = loss_fn(model(x), y)
    return list(torch.autograd.grad(loss, list(arch), allow_unused=True)), loss.detach()


def unrolled_grad(
    model: nn.Module,
    arch: Sequence[Tensor],
    weights: dict[str, Tensor],
    train_batch: Batch,
    val_batch: Batch,
    loss_fn: LossFn,
    xi: float,
    hvp: str = "exact",
    momentum_bufs: dict[str, Tensor] | None = None,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    fd_r: float = 0.01,
) -> tuple[Grads, Tensor]:
    """Second-order DARTS hypergradient. Returns (grads per α, L_val(w', α))."""
    if hvp not in HVP_MODES:
        raise ValueError(f"unknown hvp mode {hvp!r}; valid choices: {', '.join(HVP_MODES)}")
    arch = list(arch)
    names = list(weights)
    w = [weights[n] for n in names]
    extra = [weight_decay * p.detach() for p in w]
    if momentum and momentum_bufs:
        extra = [
            e + momentum * momentum_bufs[n] if n in momentum_bufs else e
            for e, n in zip(extra, names, strict=True)
        ]

    # ``exact`` keeps this graph: ⟨∇w L_train, v⟩ is later differentiated w.r.t. α from it,
    # which saves a second forward pass over the train batch.
    # ``finite_difference`` needs only ∇w here: α frozen, so no α graph is built.
    with frozen(arch if hvp == "finite_difference" else []):
        l_train = _loss(model, weights, train_batch, loss_fn)
        g_train = torch.autograd.grad(
            l_train, w, create_graph=hvp != "finite_difference", allow_unused=True
        )
    g_train = [torch.zeros_like(p) if g is None else g for g, p in zip(g_train, w, strict=True)]
    if hvp == "full":
        w_virt = [p.detach() - xi * (g + e) for p, g, e in zip(w, g_train, extra, strict=True)]
        l_val = _loss(model, dict(zip(names, w_virt, strict=True)), val_batch, loss_fn)
        return list(torch.autograd.grad(l_val, arch, allow_unused=True)), l_val.detach()

    w_virt = [
        (p.detach() - xi * (g.detach() + e)).requires_grad_()
        for p, g, e in zip(w, g_train, extra, strict=True)
    ]
    l_val = _loss(model, dict(zip(names, w_virt, strict=True)), val_batch, loss_fn)
    grads = torch.autograd.grad(l_val, arch + w_virt, allow_unused=True)
    d_arch = list(grads[: len(arch)])
    v = [
        torch.zeros_like(p) if g is None else g for g, p in zip(grads[len(arch) :], w, strict=True)
    ]
    if hvp == "exact":
        hv = _hvp_exact(g_train, arch, v)
    else:
        hv = _hvp_finite_difference(model, arch, weights, train_batch, loss_fn, v, fd_r)
    out: Grads = []
    for d, h in zip(d_arch, hv, strict=True):
        if d is None and h is None:
            out.append(None)
        else:
            out.append((d if d is not None else 0) - xi * (h if h is not None else 0))
    return out, l_val.detach()


def _hvp_exact(g_train: Sequence[Tensor], arch: list[Tensor], v: Sequence[Tensor]) -> Grads:
    """∇α ⟨∇w L_train(w, α), v⟩ by double backward through the kept gradient graph."""
    dot = sum((g * vi).sum() for g, vi in zip(g_train, v, strict=True) if g.requires_grad)
    if not torch.is_tensor(dot) or not dot.requires_grad:
        return [None] * len(arch)
    return list(torch.autograd.grad(dot, arch, allow_unused=True))


def _hvp_finite_difference(model, arch, weights, batch, loss_fn, v, r: float) -> Grads:
    """The paper's central difference with ``ε = r / ‖v‖`` (divided by 2ε, not times ε/2)."""
    norm = torch.sqrt(sum((vi.double() ** 2).sum() for vi in v))
    eps = r / max(norm.item(), 1e-12)
    grads = []
    for sign in (1.0, -1.0):
        shifted = {
            n: p.detach() + sign * eps * vi for (n, p), vi in zip(weights.items(), v, strict=True)
        }
        loss = _loss(model, shifted, batch, loss_fn)
        grads.append(torch.autograd.grad(loss, arch, allow_unused=True))
    return [None if gp is None else (gp - gm) / (2 * eps) for gp, gm in zip(*grads, strict=True)]
