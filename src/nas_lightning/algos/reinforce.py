"""REINFORCE for architecture parameters (the ProxylessNAS alternative to BinaryConnect).

Sample one architecture from softmax(α), reward it (val accuracy, optionally times the MnasNet
latency term ``(lat / T)^w``), and ascend ``(reward − baseline) · ∇α log p(arch)`` with a
moving-average baseline to cut the variance. Plain functions, so they are testable alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def log_prob_grad(alpha: Tensor, choice: int) -> Tensor:
    """``∇α log softmax(α)[choice] = onehot(choice) − softmax(α)``."""
    grad = -F.softmax(alpha.detach(), -1)
    grad[choice] += 1.0
    return grad


def reinforce_grads(
    alphas: Sequence[Tensor], choice: Sequence[int], advantage: float
) -> list[Tensor]:
    """Gradients to *descend* (the optimisers minimise): ``−advantage · ∇α log p(choice)``."""
    return [-advantage * log_prob_grad(a, c) for a, c in zip(alphas, choice, strict=True)]


def latency_reward(
    accuracy: float, latency_ms: float, target_ms: float | None, exponent: float
) -> float:
    """``acc · (lat / T)^w`` (MnasNet; ``w < 0`` penalises slow nets); ``acc`` without T."""
    if target_ms is None or exponent == 0:
        return accuracy
    return accuracy * (latency_ms / target_ms) ** exponent


def update_baseline(baseline: float, reward: float, decay: float) -> tuple[float, float]:
    """``(advantage, new baseline)``; a NaN baseline (first step) starts at the reward."""
    if math.isnan(baseline):
        baseline = reward
    advantage = reward - baseline
    return advantage, decay * baseline + (1.0 - decay) * reward


def sample_architecture(
    alphas: Sequence[Tensor], generator: torch.Generator | None = None
) -> list[int]:
    """One candidate per block, drawn from softmax(α) (α moved to the CPU in one transfer)."""
    flat = torch.cat([a.detach().reshape(-1) for a in alphas]).float().cpu()
    probs = [F.softmax(t, -1) for t in flat.split([a.numel() for a in alphas])]
    return [int(torch.multinomial(p, 1, generator=generator)) for p in probs]


__all__ = [
    "latency_reward",
    "log_prob_grad",
    "reinforce_grads",
    "sample_architecture",
    "update_baseline",
]
