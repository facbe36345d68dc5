"""The language-modelling objective (``objective=language_model``): the loss and perplexity.

Logits are ``[..., vocab]`` and targets the matching ``[...]`` token ids (``[seq_len, batch]``
for the recurrent space); every token counts once. Perplexity is ``exp`` of the mean token cross
entropy over everything the metric saw since its last reset (an epoch), not the mean of
per-batch perplexities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric


def sequence_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross entropy over every token (any leading shape)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1))


class Perplexity(Metric):
    """``exp(Σ token CE / #tokens)`` accumulated over batches (and processes)."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("nll", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        logits = logits.detach().reshape(-1, logits.size(-1))
        nll = F.cross_entropy(logits.float(), target.reshape(-1), reduction="sum")
        self.nll += nll.double()
        self.tokens += target.numel()

    def compute(self) -> Tensor:
        return torch.exp(self.nll / self.tokens.clamp_min(1)).float()


__all__ = ["Perplexity", "sequence_cross_entropy"]
