"""ProxylessNAS maths as plain functions: path sampling, BinaryConnect α-gradients, the
two-path rescale and the latency loss (Cai et al. 2019, §3.2-3.3 and their released code). The
expected latency itself is :func:`nas_lightning.latency.expected_latency`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from nas_lightning.spaces.choices import ZERO_NAMES


def sample_paths(
    probs: Tensor, two: bool, generator: torch.Generator | None = None
) -> tuple[int, list[int]]:
    """``(active, involved)`` for one block, as ProxylessNAS ``binarize()``.

    ``two``: draw two distinct paths by ``probs``, then the active one by their renormalised
    probabilities. Otherwise: the active path by ``probs`` and every path involved."""
    n = probs.numel()
    if not two:
        return int(torch.multinomial(probs, 1, generator=generator)), list(range(n))
    pair = torch.multinomial(probs, min(2, n), replacement=False, generator=generator).tolist()
    pick = torch.multinomial(probs[pair] / probs[pair].sum(), 1, generator=generator)
    return pair[int(pick)], pair


def restricted_softmax(alpha: Tensor, involved: Sequence[int]) -> Tensor:
    """softmax over ``involved`` only, 0 elsewhere (differentiable; full length)."""
    mask = torch.zeros_like(alpha, dtype=torch.bool)
    mask[list(involved)] = True
    return F.softmax(alpha.masked_fill(~mask, float("-inf")), -1)


def binaryconnect_grad(gate_grad: Tensor, alpha: Tensor, involved: Sequence[int]) -> Tensor:
    """``∂L/∂α_i = Σ_j ∂L/∂g_j · p_j (δ_ij − p_i)`` for ``i, j`` in ``involved``, with ``p`` the
    softmax of α over ``involved``; 0 for the other entries (they are not updated)."""
    p = restricted_softmax(alpha.detach(), involved)
    g = torch.zeros_like(p)
    g[list(involved)] = gate_grad.detach().to(p)[list(involved)]
    return p * g - p * (p * g).sum()


@torch.no_grad()
def rescale_pair(alpha: Tensor, old: Tensor, involved: Sequence[int]) -> None:
    """After the α step: entries outside ``involved`` back to ``old``; the involved ones shifted
    by ``log(Σ exp(new) / Σ exp(old))`` over ``involved`` (ProxylessNAS
    ``rescale_updated_arch_param``), so the probabilities of the other paths are unchanged."""
    mask = torch.zeros_like(alpha, dtype=torch.bool)
    mask[list(involved)] = True
    offset = torch.logsumexp(alpha[mask], 0) - torch.logsumexp(old[mask], 0)
    alpha.copy_(torch.where(mask, alpha - offset, old))


def latency_loss(
    ce: Tensor, lat: Tensor, kind: str, weight: float, target_ms: float | None, beta: float
) -> Tensor:
    """``additive``: ``CE + w·E`` (``CE + w·(E − T)/T`` with a target, ProxylessNAS
    ``add#linear``); ``multiplicative``: ``CE·(log E / log T)^β`` (ProxylessNAS ``mul#log``)."""
    if kind == "multiplicative":
        if target_ms is None or target_ms <= 1:
            raise ValueError(
                f"the multiplicative latency loss needs target_ms > 1, got {target_ms}"
            )
        return ce * (torch.log(lat) / math.log(target_ms)) ** beta
    if kind != "additive":
        raise ValueError(f"latency loss {kind!r} is invalid; valid: additive, multiplicative")
    if target_ms:
        return ce + weight * (lat - target_ms) / target_ms
    return ce + weight * lat


def is_zero_name(name: str) -> bool:
    """Whether a genotype entry is the zero op (a skipped block or a dropped edge)."""
    return name in ZERO_NAMES


__all__ = [
    "is_zero_name",
    "binaryconnect_grad",
    "latency_loss",
    "rescale_pair",
    "restricted_softmax",
    "sample_paths",
]
