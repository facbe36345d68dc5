"""One DARTS search cell: a DAG of ``nodes`` hidden states over mixed-op edges."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas_lightning.ops import ZERO, FactorizedReduce, build_op, relu_conv_bn

Weights = torch.Tensor | list[list[float]]


class SearchCell(nn.Module):
    """Node ``i`` sums, over its inputs ``j < i + 2``, the softmax-weighted candidate ops.

    Edges are ordered node by node (rows of α). Weightless ops (identity, pool + BN) live in
    ``shared`` once per input state and stride; ops with weights live per edge in ``edges``.
    """

    def __init__(
        self,
        op_names: Sequence[str],
        nodes: int,
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
    ):
        super().__init__()
        self.reduction, self.nodes = reduction, nodes
        self.op_names = list(op_names)
        if reduction_prev:
            self.pre0: nn.Module = FactorizedReduce(C_pp, C, affine=False)
        else:
            self.pre0 = relu_conv_bn(C_pp, C, 1, 1, 0, affine=False)
        self.pre1 = relu_conv_bn(C_p, C, 1, 1, 0, affine=False)
        self.active = [(k, n) for k, n in enumerate(self.op_names) if n != ZERO]
        self.edges = nn.ModuleList()
        self.shared = nn.ModuleDict()
        # plan[e] = list of (op column, "edge"/"shared", module key) for edge e
        self.plan: list[list[tuple[int, bool, str]]] = []
        for i in range(nodes):
            for j in range(i + 2):
                stride = 2 if reduction and j < 2 else 1
                ops = nn.ModuleDict()
                row = []
                for k, name in self.active:
                    op = build_op(name, C, stride, affine=False, preact=True)
                    if op.shareable:
                        key = f"{j}_{name}"
                        if key not in self.shared:
                            self.shared[key] = op
                        row.append((k, True, key))
                    else:
                        ops[name] = op
                        row.append((k, False, name))
                self.edges.append(ops)
                self.plan.append(row)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: Weights) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        relu: dict[int, torch.Tensor] = {}
        shared: dict[str, torch.Tensor] = {}
        e = 0
        for i in range(self.nodes):
            acc = None
            for j in range(i + 2):
                h = states[j]
                for k, is_shared, key in self.plan[e]:
                    if is_shared:
                        if key not in shared:
                            shared[key] = self.shared[key](h)
                        out = shared[key]
                    else:
                        op = self.edges[e][key]
                        if op.expects_preact:
                            if j not in relu:
                                relu[j] = F.relu(h)
                            out = op(relu[j])
                        else:
                            out = op(h)
                    acc = _accumulate(acc, out, weights[e][k])
                e += 1
            if acc is None:  # only reachable with ops == [zero], which validate_ops forbids
                raise RuntimeError("a node received no op")
            states.append(acc)
        return torch.cat(states[2:], dim=1)


def _accumulate(acc: torch.Tensor | None, out: torch.Tensor, w: float | torch.Tensor):
    if isinstance(w, float):
        return out * w if acc is None else torch.add(acc, out, alpha=w)
    return out * w if acc is None else acc + out * w
