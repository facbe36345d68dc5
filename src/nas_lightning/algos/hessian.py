"""The dominant eigenvalue of ∇²_α L_val, RobustDARTS' collapse indicator (Zela et al. 2020).

Power iteration on Hessian-vector products: one forward and one backward with
``create_graph=True`` build ∇_α L, each iteration then differentiates ``⟨∇_α L, v⟩`` again
(double backward), so the Hessian itself is never formed. The estimate is the Rayleigh quotient
``vᵀHv`` of the unit iterate; it converges to the eigenvalue of largest magnitude (with its sign)
at a rate set by the ratio of the two largest magnitudes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def hessian_vector_product(
    grads: Sequence[Tensor | None], params: Sequence[Tensor], v: Sequence[Tensor]
) -> list[Tensor]:
    """``H v`` from gradients built with ``create_graph=True`` (unused parameters give 0)."""
    pairs = [(g, vi) for g, vi in zip(grads, v, strict=True) if g is not None and g.requires_grad]
    if not pairs:
        return [torch.zeros_like(p) for p in params]
    hv = torch.autograd.grad(
        [g for g, _ in pairs],
        list(params),
        grad_outputs=[vi for _, vi in pairs],
        retain_graph=True,
        allow_unused=True,
    )
    return [torch.zeros_like(p) if h is None else h for h, p in zip(hv, params, strict=True)]


def dominant_eigenvalue(
    loss_of_alpha: Callable[[list[Tensor]], Tensor],
    params: Sequence[Tensor],
    iters: int = 50,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
) -> tuple[float, int]:
    """The eigenvalue of largest magnitude of the Hessian of ``loss_of_alpha`` at ``params``.

    ``loss_of_alpha`` maps fresh leaf copies of ``params`` to a scalar; ``params`` themselves
    are never modified. Stops when the estimate changes by at most ``tol`` relative to itself,
    or after ``iters`` products. The start vector is drawn from ``generator`` (on the CPU).
    Returns ``(eigenvalue, products used)``; ``(0.0, 1)`` when the Hessian is zero.
    """
    if iters < 1:
        raise ValueError(f"iters={iters} must be >= 1")
    xs = [p.detach().clone().requires_grad_(True) for p in params]
    with torch.enable_grad():
        loss = loss_of_alpha(xs)
        grads = torch.autograd.grad(loss, xs, create_graph=True, allow_unused=True)
        v = [torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device) for x in xs]
        estimate = math.nan
        for it in range(1, iters + 1):
            norm = torch.sqrt(sum((vi * vi).sum() for vi in v))
            v = [vi / norm for vi in v]
            hv = hessian_vector_product(grads, xs, v)
            new = float(sum((a * b).sum() for a, b in zip(v, hv, strict=True)))
            if all(not h.any() for h in hv):
                return 0.0, it
            if abs(new - estimate) <= tol * abs(new):
                return new, it
            estimate, v = new, [h.detach() for h in hv]
    return estimate, iters
