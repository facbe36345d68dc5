"""DARTS architecture gradients, as plain functions (no Lightning) so they can be tested.

Second order (Liu et al. 2019, eq. 7-8): with the virtual step ``w' = w − ξ·d(∇w L_train)``,
the step the weight optimiser would really take (:mod:`virtual_sgd`: torch.optim.SGD with its
momentum, dampening, nesterov, weight decay and maximize), the hypergradient is
``∇α L_val(w', α) − H (gain ⊙ v)`` with ``v = ∇w' L_val(w', α)``, ``H = ∇²_{α,w} L_train(w, α)``
and ``gain = −∂w'/∂(∇w L_train)`` (ξ for plain SGD).

``H u`` modes:
- ``exact`` (default): reverse over forward, ``∇α`` of the directional derivative
  ``⟨∇w L_train, u⟩ = d/dt L_train(w + t·u)`` taken by forward-mode AD (:mod:`dual_forward`).
  Every graph before it (train gradient, val loss) is freed first; its own graph saves about
  what one finite-difference pass saves, and no double-backward graph is ever built;
- ``finite_difference``: the paper's ``(∇α L_train(w + εu) − ∇α L_train(w − εu)) / (2ε)``,
  ``ε = r/‖u‖`` (the same shifted points as the paper's ``r/‖v‖`` along ``v``);
- ``full``: autograd through the whole virtual step (a reference for tests);
- ``double_backward``: the former exact mode, ``∇α ⟨∇w L_train, u⟩`` through the create_graph
  graph of the train gradient, kept while the val pass runs (about 2.8× the memory of the
  finite-difference mode); for ops that lack a forward-mode AD formula.

No α-step moves BatchNorm running statistics (:func:`running_stats_frozen`).

Mixed precision: under autocast the train and val passes run in 16 bits; the Hessian-vector
product runs in fp32 (autocast off): a central difference of 16-bit forwards measures rounding,
not curvature, and the dual-number tangents along the loss-scaled ``u`` overflow fp16. α, the
virtual step ``w'`` and every gradient combination stay fp32. ``loss_scale`` (16-mixed)
multiplies the train and val losses, ``∇w L_train`` is unscaled before the virtual step, and the
returned α gradients carry the scale exactly once (the α optimiser's step removes it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn
from torch.func import functional_call

from nas_lightning.algos.dual_forward import dual_forward
from nas_lightning.algos.virtual_sgd import VirtualSGD, check_mirrorable
from nas_lightning.ops.bn import running_stats_frozen

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
HVP_MODES = ("exact", "finite_difference", "full", "double_backward")
Grads = list[Tensor | None]
Reduce = Callable[[Sequence[Tensor | None]], list[Tensor | None]]

__all__ = [
    "HVP_MODES",
    "VirtualSGD",
    "check_mirrorable",
    "first_order_grad",
    "frozen",
    "running_stats_frozen",
    "unrolled_grad",
]


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
    x, y = batch
    return loss_fn(functional_call(model, params, (x,)), y)


def first_order_grad(
    model: nn.Module, arch: Sequence[Tensor], batch: Batch, loss_fn: LossFn
) -> tuple[Grads, Tensor]:
    """``∇α L_val(w, α)`` (ξ = 0). Returns (grads, loss); unused α get ``None``."""
    x, y = batch
    with running_stats_frozen(model):
        loss = loss_fn(model(x), y)
    return list(torch.autograd.grad(loss, list(arch), allow_unused=True)), loss.detach()


def unrolled_grad(
    model: nn.Module,
    arch: Sequence[Tensor],
    weights: dict[str, Tensor],
    train_batch: Batch,
    val_batch: Batch,
    loss_fn: LossFn,
    xi: float | None = None,
    hvp: str = "exact",
    optimizer: torch.optim.Optimizer | None = None,
    fd_r: float = 0.01,
    loss_scale: float = 1.0,
    reduce: Reduce | None = None,
) -> tuple[Grads, Tensor]:
    """Second-order DARTS hypergradient. Returns (grads per α, L_val(w', α)); the grads are
    multiplied by ``loss_scale`` (see the module docstring), the loss is not.

    The virtual step is ``optimizer``'s next step (its lr, or ``xi`` if given), or plain
    ``w − xi·∇w L_train`` when no optimiser is given. ``reduce`` (data parallel: the mean over
    ranks) is applied to ``∇w L_train`` before the virtual step and to ``∇w' L_val`` before the
    Hessian-vector product, so every rank builds the same ``w'`` and ``u``.
    """
    if hvp not in HVP_MODES:
        raise ValueError(f"unknown hvp mode {hvp!r}; valid choices: {', '.join(HVP_MODES)}")
    sgd = VirtualSGD(weights, optimizer, xi)
    with running_stats_frozen(model):
        return _unrolled(
            model,
            list(arch),
            weights,
            train_batch,
            val_batch,
            loss_fn,
            hvp,
            fd_r,
            sgd,
            loss_scale,
            reduce or (lambda tensors: list(tensors)),
        )


def _unrolled(model, arch, weights, train_batch, val_batch, loss_fn, hvp, fd_r, sgd, scale, reduce):
    names, w = list(weights), list(weights.values())

    def scaled_loss(logits: Tensor, y: Tensor) -> Tensor:  # the train and val passes' loss
        loss = loss_fn(logits, y)
        return loss if scale == 1.0 else loss * scale

    # ``double_backward`` keeps this graph: ⟨∇w L_train, u⟩ is later differentiated w.r.t. α
    # from it. The other approximations need only ∇w here: α frozen, so no α graph is built.
    keep = hvp in ("full", "double_backward")
    with frozen([] if keep else arch):
        l_train = _loss(model, weights, train_batch, scaled_loss)
        g_train = torch.autograd.grad(l_train, w, create_graph=keep, allow_unused=True)
    del l_train
    g_train = [torch.zeros_like(p) if g is None else g for g, p in zip(g_train, w, strict=True)]
    if hvp == "full":  # differentiates through w'(α): one process, weight by weight
        unscaled = [g / scale for g in g_train] if scale != 1.0 else g_train
        w_virt = [sgd.step(n, p, g) for n, p, g in zip(names, w, unscaled, strict=True)]
        l_val = _loss(model, dict(zip(names, w_virt, strict=True)), val_batch, scaled_loss)
        grads = list(torch.autograd.grad(l_val, arch, allow_unused=True))
        return grads, l_val.detach() / scale
    # the other modes detach w': the virtual step runs as foreach kernels (few launches)
    unscaled = [g.detach() for g in g_train] if keep else list(g_train)
    if scale != 1.0:
        unscaled = torch._foreach_div(unscaled, scale)
    w_virt = sgd.steps(names, w, reduce(unscaled))
    del unscaled
    if hvp != "double_backward":
        g_train = None  # nothing of the train pass is kept while the val graph lives
    w_virt = [p.requires_grad_() for p in w_virt]
    l_val = _loss(model, dict(zip(names, w_virt, strict=True)), val_batch, scaled_loss)
    grads = torch.autograd.grad(l_val, arch + w_virt, allow_unused=True)
    l_val = l_val.detach() / scale
    d_arch = list(grads[: len(arch)])
    v = reduce(list(grads[len(arch) :]))
    v = [torch.zeros_like(p) if g is None else g for g, p in zip(v, w, strict=True)]
    u = torch._foreach_mul(v, [sgd.gain(n) for n in names])
    del grads, w_virt, v
    # u carries the loss scale (it is ∝ ∇w' of the scaled val loss), so H u carries it once
    if hvp == "double_backward":  # g_train carries the scale too: remove one
        hu = [h if h is None else h / scale for h in _hvp_double_backward(g_train, arch, u)]
    else:
        with torch.autocast(w[0].device.type, enabled=False):
            if hvp == "exact":
                hu = _hvp_forward_mode(model, arch, weights, train_batch, loss_fn, u)
            else:
                hu = _hvp_finite_difference(model, arch, weights, train_batch, loss_fn, u, fd_r)
    out: Grads = []
    for d, h in zip(d_arch, hu, strict=True):
        if d is None and h is None:
            out.append(None)
        else:
            out.append((d if d is not None else 0) - (h if h is not None else 0))
    return out, l_val


def _grad_or_none(out: Tensor | None, arch: list[Tensor]) -> Grads:
    if out is None or not out.requires_grad:
        return [None] * len(arch)
    return list(torch.autograd.grad(out, arch, allow_unused=True))


def _hvp_forward_mode(model, arch, weights, batch, loss_fn, u) -> Grads:
    """∇α of ``d/dt L_train(w + t·u, α)`` at t = 0, from a dual-number forward of the network.

    The network runs inside :func:`dual_forward` (torch's BatchNorm forward-AD formula is not
    reverse-differentiable, and its one-sided products are slow). The loss is not run on dual
    numbers: torch's log_softmax/logsumexp forward-AD formulas write in place into a tensor
    their reverse mode needs. Its directional derivative is ``⟨∇_z loss(z), ż⟩`` at the logits
    ``z`` (tangent ``ż``), with ``∇_z loss`` kept differentiable (a double backward through the
    loss alone, on a batch × classes tensor).
    """
    x, y = batch
    with fwAD.dual_level(), dual_forward(), frozen(weights.values()):
        dual = {n: fwAD.make_dual(p, ui) for (n, p), ui in zip(weights.items(), u, strict=True)}
        logits, logits_t = fwAD.unpack_dual(functional_call(model, dual, (x,)))
        del dual
    # Reverse mode outside the dual level: the saved tensors lose their tangents, so the
    # backward does not also propagate (zero) tangents through every formula.
    if logits_t is None or not logits.requires_grad:
        return _grad_or_none(None, arch)
    (d_logits,) = torch.autograd.grad(loss_fn(logits, y), logits, create_graph=True)
    return _grad_or_none((d_logits * logits_t).sum(), arch)


def _hvp_double_backward(g_train: Sequence[Tensor], arch: list[Tensor], u) -> Grads:
    """∇α ⟨∇w L_train(w, α), u⟩ by double backward through the kept gradient graph."""
    dot = sum((g * ui).sum() for g, ui in zip(g_train, u, strict=True) if g.requires_grad)
    return _grad_or_none(dot if torch.is_tensor(dot) else None, arch)


def _hvp_finite_difference(model, arch, weights, batch, loss_fn, u, r: float) -> Grads:
    """The paper's central difference with ``ε = r / ‖u‖`` (divided by 2ε, not times ε/2)."""
    norm = torch.stack(torch._foreach_norm(u)).double().norm()
    eps = r / max(norm.item(), 1e-12)
    grads = []
    for sign in (1.0, -1.0):
        with torch.no_grad():  # one foreach kernel; the shifted weights are constants
            moved = torch._foreach_add(list(weights.values()), u, alpha=sign * eps)
        shifted = dict(zip(weights, moved, strict=True))
        loss = _loss(model, shifted, batch, loss_fn)
        grads.append(torch.autograd.grad(loss, arch, allow_unused=True))
    return [None if gp is None else (gp - gm) / (2 * eps) for gp, gm in zip(*grads, strict=True)]
