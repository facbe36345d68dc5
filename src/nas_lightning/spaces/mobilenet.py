"""The ProxylessNAS search space (Cai et al. 2019): a MobileNetV2 backbone of searchable blocks.

stem conv → fixed MBConv(k3, e1) → stages of searchable blocks → 1×1 conv → pool → linear.
Each block picks MBConv{kernel}×{expand} (default 3/5/7 × 3/6), plus ``zero`` (skip the block:
identity residual) when it keeps its shape. One α vector per block, initialised to 0 as in the
ProxylessNAS code. The forward takes one plan per block (see :mod:`.gated`); without one it
mixes the paths by softmax(α), so DARTS runs on this space unchanged.
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
from nas_lightning.ops.mbconv import MBConv, OpDesc, conv_bn_act
from nas_lightning.spaces.base import SearchSpace
from nas_lightning.spaces.gated import ZERO_OP, BlockPlan, MixedBlock, PathBlock
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
        self.blocks = nn.ModuleList(
            MixedBlock(b.C_in, b.C_out, b.stride, lay.choices, lay.allow_zero) for b in lay.blocks
        )
        self.final = conv_bn_act(lay.blocks[-1].C_out, lay.last_channels, 1, 1)
        self.classifier = nn.Linear(lay.last_channels, lay.num_classes)
        self.alphas = nn.ParameterList(nn.Parameter(torch.zeros(len(b))) for b in self.blocks)

    # ------------------------------------------------------------------ forward
    def _head(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.final(x), 1), 1))

    def default_plan(self) -> list[BlockPlan]:
        """softmax(α) per block: differentiable when α requires grad, else plain floats."""
        if torch.is_grad_enabled() and any(a.requires_grad for a in self.alphas):
            return [F.softmax(a, -1) for a in self.alphas]
        return [F.softmax(a.detach(), -1).tolist() for a in self.alphas]

    def forward(self, x: Tensor, plan: Sequence[BlockPlan] | None = None) -> Tensor:
        plan = self.default_plan() if plan is None else plan
        if len(plan) != len(self.blocks):
            raise ValueError(f"a plan of {len(plan)} entries for {len(self.blocks)} blocks")
        x = self.stem(x)
        if self.first is not None:
            x = self.first(x)
        for block, p in zip(self.blocks, plan, strict=True):
            x = block(x, p)
        return self._head(x)

    # ------------------------------------------------------------------ architecture
    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas)

    def op_names_per_block(self) -> list[list[str]]:
        return [list(b.op_names) for b in self.blocks]

    def block_labels(self) -> list[str]:
        return [b.label for b in self.layout.blocks]

    def all_op_names(self) -> list[str]:
        names = [n for b in self.blocks for n in b.op_names]
        return list(dict.fromkeys(n for n in names if n != ZERO_OP)) + [ZERO_OP]

    def argmax_choice(self) -> list[int]:
        return [int(torch.argmax(a.detach())) for a in self.alphas]

    def sample_choice(self, generator: torch.Generator | None = None) -> list[int]:
        """A uniformly random architecture (one candidate index per block)."""
        return [int(torch.randint(len(b), (1,), generator=generator)) for b in self.blocks]

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

    def export(self) -> BlockGenotype:
        names = self.op_names_per_block()
        return BlockGenotype(
            blocks=[n[c] for n, c in zip(names, self.argmax_choice(), strict=True)],
            labels=self.block_labels(),
            space=copy.deepcopy(self.config),
        )

    def export_probs(self) -> dict[str, dict[str, dict[str, float]]]:
        cols = self.all_op_names()
        table = {}
        for label, block, a in zip(self.block_labels(), self.blocks, self.alphas, strict=True):
            p = dict(zip(block.op_names, F.softmax(a.detach().float(), -1).tolist(), strict=True))
            table[label] = {c: p.get(c, 0.0) for c in cols}
        return {"blocks": table}

    def single_path(self, choice: Sequence[int] | BlockGenotype) -> SinglePathNet:
        """A standalone derived network holding copies of the chosen candidates' weights."""
        idx = self.to_choice(choice)
        stem = [copy.deepcopy(self.stem)] + ([copy.deepcopy(self.first)] if self.first else [])
        blocks = [
            PathBlock(copy.deepcopy(b.candidates[j]), b.residual)
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
    def latency_specs(self) -> dict[str, list[OpDesc]]:
        """Per block label, the OpDesc of every candidate in α order (real feature-map sizes)."""
        out = {}
        for b, block in zip(self.layout.blocks_sized(), self.blocks, strict=True):
            descs = [
                OpDesc("mbconv", b.C_in, b.C_out, b.in_size, b.out_size, k, b.stride, e)
                for k, e in block.choices
            ]
            if block.zero_index is not None:
                descs.append(OpDesc(ZERO_OP, b.C_in, b.C_out, b.in_size, b.out_size))
            out[b.label] = descs
        return out

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
