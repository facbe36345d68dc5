"""The ProxylessNAS search space (Cai et al. 2019): a MobileNetV2 backbone of searchable blocks.

stem conv → fixed MBConv(k3, e1) → stages of searchable blocks → 1×1 conv → pool → linear.
Each block is one choice point (key = its label, e.g. ``s1b0``) over MBConv{kernel}×{expand}
(default 3/5/7 × 3/6), plus ``zero`` (skip the block: identity residual) when it keeps its shape.
The candidate grid comes from the config once (``kernels`` × ``expands``); every candidate is an
op-registry description, so the same descriptions build, price and name it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas_lightning.genotype import BlockGenotype
from nas_lightning.ops import OpDesc, describe
from nas_lightning.ops.mbconv import MBConv, conv_bn_act
from nas_lightning.spaces.base import Probs, SearchSpace
from nas_lightning.spaces.block import ZERO_OP, PathBlock, SearchBlock
from nas_lightning.spaces.mobilenet_layout import MobileNetLayout


class SinglePathNet(nn.Module):
    """A derived network: the chosen candidate per block, ``zero`` blocks dropped."""

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], head: nn.Module):
        super().__init__()
        self.stem, self.blocks, self.head = stem, nn.Sequential(*blocks), head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


class MobileNetSearchSpace(SearchSpace):
    """See :class:`MobileNetLayout` for the arguments; ``init_channels`` and ``layers`` are the
    size knobs shared with the DARTS space (stem width, cap on the number of searchable blocks).
    """

    kind = "block"

    def __init__(self, **kwargs: Any):
        super().__init__()
        self.layout = lay = MobileNetLayout(**kwargs)
        self.config = lay.config()
        self.num_classes, self.input_size = lay.num_classes, lay.input_size
        self.stem = conv_bn_act(lay.in_channels, lay.stem_channels, 3, lay.stem_stride)
        self.first = None
        if lay.first_channels:
            op = MBConv(lay.stem_channels, lay.first_channels, 3, 1, 1)
            self.first = PathBlock(op, residual=lay.stem_channels == lay.first_channels)
        sized = lay.blocks_sized() if lay.input_size is not None else lay.blocks
        self.blocks = nn.ModuleList(SearchBlock(b.label, b.label, self._descs(b)) for b in sized)
        self.final = conv_bn_act(lay.blocks[-1].C_out, lay.last_channels, 1, 1)
        self.classifier = nn.Linear(lay.last_channels, lay.num_classes)

    def _descs(self, b: Any) -> list[OpDesc]:
        size = b.in_size or (0, 0)
        descs = [
            describe("mbconv", b.C_in, b.C_out, size, b.stride, kernel=k, expand=e)
            for k, e in self.layout.choices
        ]
        if self.layout.allow_zero and b.stride == 1 and b.C_in == b.C_out:
            descs.append(describe(ZERO_OP, b.C_in, b.C_out, size, b.stride))
        return descs

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        if self.first is not None:
            x = self.first(x)
        for block in self.blocks:
            x = block(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.final(x), 1), 1))

    # ------------------------------------------------------------------ architecture
    def op_names_per_block(self) -> list[list[str]]:
        return [list(b.op_names) for b in self.blocks]

    def block_labels(self) -> list[str]:
        return [b.label for b in self.layout.blocks]

    def to_choice(self, choice: Sequence[int] | BlockGenotype) -> list[int]:
        """Candidate indices from indices or a genotype, validated against this space."""
        names = self.op_names_per_block()
        ops = choice.blocks if isinstance(choice, BlockGenotype) else list(choice)
        if len(ops) != len(names):
            raise ValueError(f"{len(ops)} choices for {len(names)} searchable blocks")
        out = []
        for label, op, valid in zip(self.block_labels(), ops, names, strict=True):
            if isinstance(op, str):
                if op not in valid:
                    raise ValueError(f"block {label}: op {op!r} invalid; valid: {valid}")
                op = valid.index(op)
            if not 0 <= int(op) < len(valid):
                raise ValueError(f"block {label}: index {op} invalid; valid: 0..{len(valid) - 1}")
            out.append(int(op))
        return out

    def derive(self, probs: Probs, input_weights: Probs | None = None) -> BlockGenotype:
        """The most probable candidate per block."""
        names = self.op_names_per_block()
        chosen = [int(torch.argmax(probs[label])) for label in self.block_labels()]
        return BlockGenotype(
            blocks=[n[c] for n, c in zip(names, chosen, strict=True)],
            labels=self.block_labels(),
            space=copy.deepcopy(self.config),
        )

    def single_path(self, choice: Sequence[int] | BlockGenotype) -> SinglePathNet:
        """A standalone derived network holding copies of the chosen candidates' weights."""
        idx = self.to_choice(choice)
        stem = [copy.deepcopy(self.stem)] + ([copy.deepcopy(self.first)] if self.first else [])
        blocks = [
            PathBlock(copy.deepcopy(b.candidate(j)), b.residual)
            for b, j in zip(self.blocks, idx, strict=True)
            if j != b.zero_index
        ]
        head = nn.Sequential(
            copy.deepcopy(self.final),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            copy.deepcopy(self.classifier),
        )
        return SinglePathNet(nn.Sequential(*stem), blocks, head)

    # ------------------------------------------------------------------ latency interface
    def latency_specs(self) -> dict[str, list[list[OpDesc]]]:
        """Per block label, the OpDesc of every candidate in α order (real feature-map sizes)."""
        self.layout.require_input_size()
        return super().latency_specs()

    def fixed_specs(self) -> list[OpDesc]:
        """The non-searchable ops: stem conv, fixed first block, final 1×1 conv, classifier."""
        lay = self.layout
        H, W = lay.require_input_size()
        s = lay.stem_stride
        stem_size = (math.ceil(H / s), math.ceil(W / s))
        out = [OpDesc("conv", lay.in_channels, lay.stem_channels, (H, W), stem_size, 3, s)]
        if lay.first_channels:
            out.append(
                OpDesc(
                    "mbconv", lay.stem_channels, lay.first_channels, stem_size, stem_size, 3, 1, 1
                )
            )
        last = lay.blocks_sized()[-1]
        out.append(OpDesc("conv", last.C_out, lay.last_channels, last.out_size, last.out_size))
        out.append(OpDesc("pool_linear", lay.last_channels, lay.num_classes, last.out_size, (1, 1)))
        return out


__all__ = ["MobileNetSearchSpace", "SinglePathNet"]
