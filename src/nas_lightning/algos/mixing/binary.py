"""ProxylessNAS path modes (Cai et al. 2019) for the forwards the algorithm does not plan itself.

``binary``: a training forward with α frozen (the w-step) runs one path per decision sampled
from p = softmax(α) (the memory of a single compact net); evaluation runs the argmax path.
``darts``: the softmax mix everywhere. ``full``: the one-shot unweighted sum of all paths in the
w-step and evaluation. The α-steps (BinaryConnect gates, REINFORCE samples) are planned by the
algorithm through :meth:`MixingStrategy.using`; without a plan a differentiable forward mixes by
softmax(α).
"""

from __future__ import annotations

import torch

from nas_lightning.algos.mixing.base import MixingStrategy
from nas_lightning.spaces.plans import Plan

MODES = ("binary", "darts", "full")


class BinaryGateMixing(MixingStrategy):
    """α initialised to 0 (uniform), as in the ProxylessNAS code."""

    title = "ProxylessNAS binary gates"

    def __init__(self, mode: str = "binary", init_std: float = 0.0):
        super().__init__(init_std)
        if mode not in MODES:
            raise ValueError(f"algo.mode={mode!r} is invalid; valid choices: {', '.join(MODES)}")
        self.mode = mode
        self.generator: torch.Generator | None = None  # None: the global (seeded) RNG
        self.last_choice: dict[str, int] | None = None  # paths of the last sampled forward

    def sample(self) -> dict[str, int]:
        """One candidate per decision, drawn from softmax(α) (one host transfer)."""
        probs = self.probs()
        flat = torch.cat([p.float() for p in probs.values()]).cpu()
        rows = flat.split([len(p) for p in probs.values()])
        return {
            key: int(torch.multinomial(r, 1, generator=self.generator))
            for key, r in zip(probs, rows, strict=True)
        }

    def argmax(self) -> dict[str, int]:
        return {key: int(p.argmax()) for key, p in self.probs().items()}

    def make_plans(self, training: bool) -> dict[str, Plan]:
        if self.mode == "darts" or self.alpha_needs_grad():
            return super().make_plans(training)
        if self.mode == "full":
            return {key: [1.0] * w for key, (_, _, w) in self.rows.items()}
        if not training:
            return self.argmax()
        self.last_choice = self.sample()
        return dict(self.last_choice)


__all__ = ["MODES", "BinaryGateMixing"]
