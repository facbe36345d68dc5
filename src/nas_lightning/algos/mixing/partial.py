"""PC-DARTS mixing (Xu et al., ICLR 2020): partial channel connections and edge normalisation.

Each edge sends ``1/K`` of its input channels through the softmax-mixed candidates (rebuilt for
``C/K`` channels) and passes the rest by (max-pooled at stride 2), then shuffles the channels
with ``K`` groups. Each node weights its incoming edges by softmax(β) over the node's inputs;
derivation ranks edges by softmax(α)·softmax(β), as in the PC-DARTS code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas_lightning.algos.mixing.base import MixingStrategy
from nas_lightning.spaces.base import Probs, SearchSpace
from nas_lightning.spaces.choices import ChoiceGroup, Decision, InputChoice
from nas_lightning.spaces.plans import Plan


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class PartialChannelMixing(MixingStrategy):
    """Softmax mixing on ``1/k`` of the channels, plus β edge normalisation per node."""

    title = "PC-DARTS partial-channel mixing"

    unsupported = {
        "block": "partial channel connections and edge normalisation need cell edges that keep "
        "the channel count and nodes with several inputs; use algo=darts, gdas or proxyless",
        "recurrent": "a recurrent cell's edges are gated activations of one projection, with no "
        "channels to split; use algo=darts, gdas or proxyless",
    }

    def __init__(self, init_std: float = 1e-3, k: int = 4, edge_normalization: bool = True):
        super().__init__(init_std)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"PC-DARTS k={k!r} is invalid; it must be an integer >= 1")
        self.k, self.edge_normalization = k, edge_normalization
        self.beta = nn.ParameterDict()
        self.beta_rows: dict[str, tuple[str, int, int]] = {}
        self._betas: dict[str, Plan] = {}

    def install(self, space: SearchSpace) -> None:
        super().install(space)
        for group in (m for m in space.modules() if isinstance(m, ChoiceGroup)):
            C = group.points[0].channels
            if C is None or C % self.k:
                raise ValueError(f"PC-DARTS k={self.k} must divide every edge's channels ({C})")
            if self.k > 1:
                group.rebuild(C // self.k, group.points[0].builder)
        if self.edge_normalization:
            nodes = [
                Decision(ic.key, ic.group, ic.key, tuple(str(j) for j in range(ic.n_inputs)))
                for ic in self.nodes
            ]
            self.beta = self._matrices(nodes, self.beta_rows, "beta")

    def _beta_probs(self, detach: bool) -> dict[str, Tensor]:
        return {
            g: F.softmax(
                self.logits(g, self.beta, "beta").detach()
                if detach
                else self.logits(g, self.beta, "beta"),
                -1,
            )
            for g in self.beta
        }

    def input_weights(self) -> Probs | None:
        if not self.edge_normalization:
            return None
        rows = {k: v for k, v in self.beta_rows.items()}
        probs = self._beta_probs(detach=True)
        return {key: probs[g][r][:w] for key, (g, r, w) in rows.items()}

    def begin_forward(self, training: bool) -> None:
        super().begin_forward(training)
        if self.edge_normalization:
            needs = self.alpha_needs_grad()
            probs = self._beta_probs(detach=not needs)
            self._betas = {
                key: probs[g][r][:w] if needs else probs[g][r][:w].tolist()
                for key, (g, r, w) in self.beta_rows.items()
            }

    def mix_group(self, group: ChoiceGroup, x: Tensor) -> list[Tensor | None]:
        if self.k == 1:
            return super().mix_group(group, x)
        c = x.shape[1] // self.k
        outs = super().mix_group(group, x[:, :c])
        rest = x[:, c:]
        if group.points[0].stride == 2:
            rest = F.max_pool2d(rest, 2, 2, ceil_mode=True)
        return [
            None if o is None else channel_shuffle(torch.cat([o, rest], 1), self.k) for o in outs
        ]

    def aggregate(self, node: InputChoice, inputs: list[Tensor | None]) -> Tensor | None:
        if not self.edge_normalization:
            return super().aggregate(node, inputs)
        weights = self._betas[node.key]
        out = None
        for t, w in zip(inputs, weights, strict=True):
            if t is not None:
                out = t * w if out is None else out + t * w
        return out


__all__ = ["PartialChannelMixing", "channel_shuffle"]
