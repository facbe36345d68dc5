"""PC-DARTS (Xu et al., ICLR 2020): DARTS with partial channel connections and edge
normalisation (:class:`~nas_lightning.algos.mixing.PartialChannelMixing`).

``k``: 1/k of each edge's channels go through the mixed op (k=4 in the paper);
``edge_normalization``: each node weights its inputs by softmax(β), and the genotype ranks edges
by softmax(α)·softmax(β). Everything else (first or second order α-steps) is DARTS's.
"""

from __future__ import annotations

from typing import Any

from nas_lightning.algos.darts import DartsSearch
from nas_lightning.algos.mixing import PartialChannelMixing


class PcDartsSearch(DartsSearch):
    def __init__(self, *args: Any, k: int = 4, edge_normalization: bool = True, **kwargs: Any):
        self.k, self.edge_normalization = k, edge_normalization
        super().__init__(*args, **kwargs)

    def make_mixing(self) -> PartialChannelMixing:
        return PartialChannelMixing(k=self.k, edge_normalization=self.edge_normalization)


__all__ = ["PcDartsSearch"]
