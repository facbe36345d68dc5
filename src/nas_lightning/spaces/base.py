"""The interface every search space (supernet) offers to algorithms and callbacks.

Algorithms only see ``arch_parameters()`` / ``weight_parameters()`` / ``export()`` /
``export_probs()``, so a new space plugs into DARTS, ProxylessNAS and the callbacks unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn


class SearchSpace(nn.Module, ABC):
    """A supernet whose parameters split into architecture (α) and weights (w)."""

    @abstractmethod
    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters α (never handed to the weight optimiser)."""

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_weight_parameters()]

    def named_weight_parameters(self) -> list[tuple[str, nn.Parameter]]:
        arch = {id(p) for p in self.arch_parameters()}
        return [(n, p) for n, p in self.named_parameters() if id(p) not in arch]

    @abstractmethod
    def export(self) -> Any:
        """The discrete architecture (a genotype with ``to_dict()`` and ``ops()``)."""

    @abstractmethod
    def export_probs(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{group: {row_label: {op_name: probability}}}``; one heatmap per group."""

    def arch_entropy(self) -> torch.Tensor:
        """Mean entropy of softmax(α) over all decision rows (a convergence signal)."""
        rows = [p.detach().reshape(-1, p.shape[-1]) for p in self.arch_parameters()]
        ent = [-(torch.softmax(r, -1) * torch.log_softmax(r, -1)).sum(-1) for r in rows]
        return torch.cat(ent).mean()
