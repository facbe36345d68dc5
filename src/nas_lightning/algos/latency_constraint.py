"""A hard latency target for ProxylessNAS: E[lat] ≤ T as a constraint, not only a penalty.

Two parts, both plain functions:

- a Lagrange multiplier λ ≥ 0 on ``(E[lat] − T)/T``, raised by dual ascent while the constraint
  is violated and lowered (to 0 at most) while it holds, so the α loss is
  ``CE + λ·(E[lat] − T)/T`` with λ found by the search rather than tuned by hand;
- a projection after every α step: while E[lat] > T, step α down the gradient of E[lat]
  (``∂E/∂α_bj = p_bj (F_bj − E_b)``, per decision row) with a growing step size, so E[lat] ≤ T
  holds after every update whenever T is reachable at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nas_lightning.latency.base import LatencyTables, expected_latency


def fastest_latency_ms(tables: LatencyTables) -> float:
    """The smallest E[lat] any architecture reaches: every decision at its cheapest candidate."""
    per_key, fixed = tables
    return fixed + sum(float(t.min()) for t in per_key.values())


def dual_ascent(multiplier: float, lat_ms: float, target_ms: float, lr: float) -> float:
    """``λ ← max(0, λ + lr·(E − T)/T)``."""
    return max(0.0, multiplier + lr * (lat_ms - target_ms) / target_ms)


@torch.no_grad()
def project(
    rows: dict[str, Tensor], tables: LatencyTables, target_ms: float, max_iters: int = 50
) -> int:
    """Move the α rows (in place) until E[lat] ≤ T; returns the number of steps taken."""
    per_key = tables[0]
    step = 1.0
    for it in range(max_iters):
        probs = {k: F.softmax(a, -1) for k, a in rows.items()}
        lat = float(expected_latency(probs, tables))
        if lat <= target_ms:
            return it
        for k, a in rows.items():
            p, f = probs[k], per_key[k].to(a)
            a -= step * p * (f - (p * f).sum()) / max(target_ms, 1e-12)
        step *= 2.0
    raise RuntimeError(
        f"could not bring E[lat] to the target {target_ms} ms in {max_iters} projection steps "
        f"(E[lat] = {lat:.4g} ms)"
    )


__all__ = ["dual_ascent", "fastest_latency_ms", "project"]
