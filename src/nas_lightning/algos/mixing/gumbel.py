"""GDAS mixing (Dong & Yang, CVPR 2019): one Gumbel-softmax hard sample per decision.

Training forwards draw ``y = softmax((α + g) / τ)`` with Gumbel noise ``g`` and run only the
sampled op ``argmax y``; its output is scaled by ``h = onehot − sg(y) + y`` (exactly one-hot in
value, the soft sample's gradient), so the α gradient is the straight-through estimate
``∂L/∂α = (∂y/∂α)ᵀ ∂L/∂h`` where only the sampled entry of ``∂L/∂h`` is non-zero:
``⟨∂L/∂out, o_index(x)⟩``. Memory stays close to the single-path net's. With α frozen (w-step)
the sample is a plain path index; evaluation runs the argmax path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nas_lightning.algos.mixing.base import MixingStrategy
from nas_lightning.spaces.plans import Hard, Plan


def gumbel_like(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard Gumbel noise ``−log(−log U)``, drawn on the CPU when a generator is given."""
    u = torch.rand(logits.shape, generator=generator, dtype=torch.float64)
    u = u.clamp(1e-20, 1 - 1e-12)
    return (-torch.log(-torch.log(u))).to(device=logits.device, dtype=logits.dtype)


class GumbelMixing(MixingStrategy):
    """Hard Gumbel-softmax sampling at temperature ``tau`` (the algorithm anneals it)."""

    title = "GDAS Gumbel sampling"

    def __init__(self, init_std: float = 1e-3, tau: float = 10.0):
        super().__init__(init_std)
        if not tau > 0:
            raise ValueError(f"GDAS temperature tau={tau} must be > 0")
        self.tau = float(tau)
        self.generator: torch.Generator | None = None  # None: the global (seeded) RNG
        self.last_sample: dict[str, int] = {}  # the paths of the last training forward

    def make_plans(self, training: bool) -> dict[str, Plan]:
        if not training:
            return self.rows_of({g: p.argmax(-1).tolist() for g, p in self.group_probs().items()})
        differentiable = self.alpha_needs_grad()
        plans: dict[str, dict[int, Plan]] = {}
        for g in self.alpha:
            logits = self.logits(g)
            noise = gumbel_like(logits, self.generator)
            y = F.softmax((logits + noise) / self.tau, -1)
            index = y.detach().argmax(-1)
            if differentiable:
                hard = F.one_hot(index, y.shape[-1]).to(y) - y.detach() + y
                plans[g] = {r: Hard(i, hard[r]) for r, i in enumerate(index.tolist())}
            else:
                plans[g] = dict(enumerate(index.tolist()))
        out = {key: plans[g][r] for key, (g, r, _) in self.rows.items()}
        self.last_sample = {k: p if isinstance(p, int) else p.index for k, p in out.items()}
        return out


__all__ = ["GumbelMixing", "gumbel_like"]
