"""Parameter and multiply-accumulate counts of a network (no third-party profiler).

MACs are counted with forward hooks on one inference pass at batch size 1: a convolution costs
``output elements × (C_in / groups) × kh × kw``, a linear layer ``in × out``. Normalisation,
activations, pooling and additions are not counted (the usual convention of DARTS-era papers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn


def count_params(module: nn.Module, exclude: Iterable[str] = ("auxiliary_head",)) -> int:
    """Trainable parameters, leaving out submodules whose name starts with an ``exclude`` entry
    (the auxiliary head is training-only; papers report the network without it)."""
    skip = tuple(f"{e}." for e in exclude)
    return sum(p.numel() for n, p in module.named_parameters() if not n.startswith(skip))


def _layer_macs(layer: nn.Module, out: torch.Tensor) -> int:
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        return out[0].numel() * (layer.in_channels // layer.groups) * kh * kw
    if isinstance(layer, nn.Linear):
        return out[0].numel() * layer.in_features
    return 0


def count_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
    """MACs of one forward pass of a single ``input_shape`` sample ``(C, H, W)`` in eval mode."""
    total = [0]

    def hook(layer: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
        total[0] += _layer_macs(layer, out)

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = module.training
    device = next(module.parameters()).device
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros((1, *input_shape), device=device))
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return total[0]
