"""One DARTS search cell: a DAG of ``nodes`` hidden states over mixed-op edges.

The cell declares its edges as :class:`OpChoice` points keyed ``<group>_e<edge>`` (so every
cell of one type shares one α row per edge), grouped by source state in :class:`ChoiceGroup`s,
and its nodes as :class:`InputChoice` points. Weightless candidates (identity, pool + BN) live
once per source state; a candidate with weights is built without its leading ReLU, which the
group applies once per state.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from nas_lightning.ops import ZERO, FactorizedReduce, build_op, relu_conv_bn
from nas_lightning.spaces.choices import ChoiceGroup, InputChoice, OpChoice, mix_groups


def edge_index(node: int, inp: int) -> int:
    """Row of edge ``inp → node`` (node 0 is hidden state 2); edges are ordered node by node."""
    return sum(i + 2 for i in range(node)) + inp


def edge_label(node: int, inp: int) -> str:
    return f"{inp}→{node + 2}"


def _build_preact(name: str, channels: int, *, affine: bool, stride: int) -> nn.Module:
    return build_op(name, channels, stride, affine=affine, preact=True)


def _build(affine: bool, stride: int):
    """``builder(name, channels)`` of one source state's edges (picklable: ddp_spawn)."""
    return partial(_build_preact, affine=affine, stride=stride)


class SearchCell(nn.Module):
    """Node ``i`` sums, over its inputs ``j < i + 2``, the mixed candidate ops on edge ``j → i``."""

    def __init__(
        self,
        op_names: Sequence[str],
        nodes: int,
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        k: int = 2,
    ):
        super().__init__()
        self.reduction, self.nodes, self.C = reduction, nodes, C
        self.op_names = list(op_names)
        self.group = "reduce" if reduction else "normal"
        if reduction_prev:
            self.pre0: nn.Module = FactorizedReduce(C_pp, C, affine=False)
        else:
            self.pre0 = relu_conv_bn(C_pp, C, 1, 1, 0, affine=False)
        self.pre1 = relu_conv_bn(C_p, C, 1, 1, 0, affine=False)
        # sources[j]: the edges leaving hidden state j, i.e. into nodes max(0, j - 1) .. nodes - 1
        self.sources = nn.ModuleList()
        self.targets: list[list[int]] = []
        for j in range(nodes + 1):
            stride = 2 if reduction and j < 2 else 1
            builder = _build(False, stride)
            probe = {n: builder(n, C) for n in self.op_names if n != ZERO}
            shared_names = [n for n, m in probe.items() if m.shareable]
            targets = list(range(max(0, j - 1), nodes))
            points = [
                OpChoice(
                    key=f"{self.group}_e{edge_index(i, j)}",
                    group=self.group,
                    label=edge_label(i, j),
                    op_names=self.op_names,
                    modules=(
                        {n: m for n, m in probe.items() if n not in shared_names}
                        if t == 0
                        else {n: builder(n, C) for n in probe if n not in shared_names}
                    ),
                    shared=shared_names,
                    builder=builder,
                    channels=C,
                    stride=stride,
                )
                for t, i in enumerate(targets)
            ]
            shared = {n: probe[n] for n in shared_names}
            self.sources.append(ChoiceGroup(points, shared))
            self.targets.append(targets)
        self.node_inputs = nn.ModuleList(
            InputChoice(f"{self.group}_n{i}", self.group, i + 2, min(k, i + 2))
            for i in range(nodes)
        )

    def edges(self) -> list[OpChoice]:
        """The edge choice points in α-row order (node by node)."""
        by_pair = {
            (i, j): p
            for j, (g, ts) in enumerate(zip(self.sources, self.targets, strict=True))
            for i, p in zip(ts, g.points, strict=True)
        }
        return [by_pair[i, j] for i in range(self.nodes) for j in range(i + 2)]

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        incoming: list[list[torch.Tensor | None]] = [[] for _ in range(self.nodes)]

        def expand(j: int, outs: list[torch.Tensor | None] | None = None) -> None:
            outs = self.sources[j](states[j]) if outs is None else outs  # one group call
            for i, out in zip(self.targets[j], outs, strict=True):
                incoming[i].append(out)

        # the two inputs feed every node: their edges may run as one fused call
        for j, outs in enumerate(mix_groups(self.sources[:2], states)):
            expand(j, outs)
        for i in range(self.nodes):
            node = self.node_inputs[i](incoming[i])
            if node is None:  # every input chose the zero op
                node = self.sources[0].points[i].zeros(states[0])
            states.append(node)
            if i + 2 < len(self.sources):
                expand(i + 2)
        return torch.cat(states[2:], dim=1)
