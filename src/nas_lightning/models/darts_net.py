"""The DARTS evaluation network (``NetworkCIFAR`` of the quark0/darts code) built from a genotype.

stem → ``layers`` cells (reductions at 1/3 and 2/3 of depth) → global pool → linear, each cell
running only the genotype's ops (affine BatchNorm), with an auxiliary head after the second
reduction and drop-path on every non-identity op, both active only in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas_lightning.genotype import CellGenotype, Gene
from nas_lightning.genotype_views import split_nodes
from nas_lightning.ops import ZERO, FactorizedReduce, build_op, canonical_name, relu_conv_bn


def drop_path(x: Tensor, prob: float) -> Tensor:
    """Zero whole samples with probability ``prob`` and rescale the rest by 1/(1-prob)."""
    if prob <= 0.0:
        return x
    keep = 1.0 - prob
    mask = torch.empty((x.shape[0], 1, 1, 1), device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


def cell_nodes(gene: Gene, concat: Sequence[int], cell: str) -> list[list[tuple[str, int]]]:
    """The gene's ``(op, input)`` pairs per node, checked: inputs are earlier states and no op
    is ``none`` (a derived network never holds the zero op)."""
    nodes = split_nodes(gene, concat, cell)
    for i, pairs in enumerate(nodes):
        for op, j in pairs:
            if canonical_name(op) == ZERO:
                raise ValueError(f"{cell} cell node {i}: op {op!r} is not allowed in a network")
            if not 0 <= j < i + 2:
                raise ValueError(f"{cell} cell node {i}: input {j} invalid; valid: 0..{i + 1}")
    return nodes


class EvalCell(nn.Module):
    """One cell of the derived network: each node sums its ``k`` chosen (op, input) pairs."""

    def __init__(
        self,
        gene: Gene,
        concat: Sequence[int],
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
    ):
        super().__init__()
        self.reduction = reduction
        self.pre0 = FactorizedReduce(C_pp, C) if reduction_prev else relu_conv_bn(C_pp, C, 1, 1, 0)
        self.pre1 = relu_conv_bn(C_p, C, 1, 1, 0)
        self.nodes = cell_nodes(gene, concat, "reduce" if reduction else "normal")
        self.concat = list(concat)
        self.ops = nn.ModuleList()
        self.droppable: list[bool] = []  # drop-path skips only the identity (DARTS code)
        for pairs in self.nodes:
            for op, j in pairs:
                stride = 2 if reduction and j < 2 else 1
                self.ops.append(build_op(op, C, stride, affine=True))
                self.droppable.append(not (canonical_name(op) == "skip_connect" and stride == 1))

    def forward(self, s0: Tensor, s1: Tensor, drop_prob: float = 0.0) -> Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        e = 0
        for pairs in self.nodes:
            total = None
            for _, j in pairs:
                h = self.ops[e](states[j])
                if self.training and drop_prob > 0 and self.droppable[e]:
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
                e += 1
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """The DARTS CIFAR auxiliary classifier, adapted to any feature-map size.

    The paper's head pools an 8×8 map with a 5×5/3 average pool to 2×2; maps smaller than 5×5
    (8×8 digits give 2×2 here) skip that pool, and an adaptive pool always yields 2×2.
    """

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        if min(x.shape[-2:]) >= 5:
            x = self.pool(x)
        x = self.features(F.adaptive_avg_pool2d(x, 2))
        return self.classifier(torch.flatten(x, 1))


class DartsNetwork(nn.Module):
    """``forward`` returns logits; :meth:`forward_with_aux` also the auxiliary logits (training
    only). ``drop_path_prob`` is set from outside (a linear schedule over epochs)."""

    def __init__(
        self,
        genotype: CellGenotype,
        in_channels: int = 3,
        num_classes: int = 10,
        init_channels: int = 36,
        layers: int = 20,
        auxiliary: bool = True,
        stem_multiplier: int = 3,
        channels_last: bool = False,
    ):
        super().__init__()
        if layers < 1 or init_channels < 2 or init_channels % 2:
            raise ValueError(
                f"layers={layers}, init_channels={init_channels}: need layers >= 1 and an even "
                "init_channels >= 2"
            )
        self.genotype, self.layers, self.channels_last = genotype, layers, channels_last
        self.drop_path_prob = 0.0
        C = stem_multiplier * init_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C)
        )
        C_pp, C_p, C = C, C, init_channels
        self.cells = nn.ModuleList()
        self.aux_after = 2 * layers // 3
        reduction_prev, C_aux = False, C_p
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            C = 2 * C if reduction else C
            gene, concat = (
                (genotype.reduce, genotype.reduce_concat)
                if reduction
                else (genotype.normal, genotype.normal_concat)
            )
            self.cells.append(EvalCell(gene, concat, C_pp, C_p, C, reduction, reduction_prev))
            reduction_prev = reduction
            C_pp, C_p = C_p, len(concat) * C
            if i == self.aux_after:
                C_aux = C_p
        self.auxiliary_head = AuxiliaryHead(C_aux, num_classes) if auxiliary else None
        self.classifier = nn.Linear(C_p, num_classes)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward_with_aux(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_after and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(torch.flatten(F.adaptive_avg_pool2d(s1, 1), 1))
        return logits, aux

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_aux(x)[0]
