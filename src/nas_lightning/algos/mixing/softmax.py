"""DARTS mixing: every candidate runs, weighted by softmax(α) (the base strategy's plan)."""

from __future__ import annotations

from nas_lightning.algos.mixing.base import MixingStrategy


class SoftmaxMixing(MixingStrategy):
    """``o(x) = Σ_k softmax(α)_k · o_k(x)`` on every choice point (Liu et al. 2019, eq. 2)."""


__all__ = ["SoftmaxMixing"]
