"""The DARTS CNN cell search space (Liu et al. 2019, §2.1 and the quark0/darts search model).

Efficiency, without changing the maths of the DARTS supernet:
- the ``zero`` op is never evaluated: it adds nothing to the mix, while softmax(α) still
  normalises over it, so its α receives the correct gradient;
- ops without weights (identity, pool + non-affine BN) are evaluated once per hidden state and
  shared by every edge leaving it; the leading ReLU of the conv ops is likewise applied once;
- when α needs no gradient (the w-step, evaluation) the mixing weights are Python floats and
  the sum is a fused ``add(alpha=w)``, so op outputs are not kept for α's backward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas_lightning.genotype import CellGenotype, derive_cell
from nas_lightning.ops import validate_ops
from nas_lightning.spaces.base import SearchSpace
from nas_lightning.spaces.cell import SearchCell

DARTS_OPS = [
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
]


class CNNSearchSpace(SearchSpace):
    """Stem → ``layers`` cells (reductions at 1/3 and 2/3 of depth) → global pool → linear."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        init_channels: int = 16,
        layers: int = 8,
        nodes: int = 4,
        ops: Sequence[str] = tuple(DARTS_OPS),
        stem_multiplier: int = 3,
        k: int = 2,
        channels_last: bool = False,
        input_size: tuple[int, int] | None = None,
    ):
        super().__init__()
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("num_classes", num_classes, 2),
            ("init_channels", init_channels, 1),
            ("layers", layers, 1),
            ("nodes", nodes, 1),
            ("stem_multiplier", stem_multiplier, 1),
        ):
            if int(value) < low:
                raise ValueError(f"space.{name}={value} is invalid; it must be >= {low}")
        if init_channels % 2:
            raise ValueError(f"space.init_channels={init_channels} must be even")
        if k not in (1, 2):
            raise ValueError(
                f"space.k={k}: each node has at least 2 candidate inputs; valid choices: 1, 2"
            )
        self.op_names = validate_ops(ops)
        self.nodes, self.k, self.layers = nodes, k, layers
        self.num_classes = num_classes
        # resolution-agnostic (reductions use ceil(H/2)); kept for reports and latency models
        self.input_size = tuple(input_size) if input_size is not None else None
        self.channels_last = channels_last
        self.reduction_layers = sorted({layers // 3, 2 * layers // 3})
        n_edges = sum(i + 2 for i in range(nodes))
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(n_edges, len(self.op_names)))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(n_edges, len(self.op_names)))

        C_curr = stem_multiplier * init_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr)
        )
        C_pp, C_p, C_curr = C_curr, C_curr, init_channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in self.reduction_layers
            if reduction:
                C_curr *= 2
            self.cells.append(
                SearchCell(self.op_names, nodes, C_pp, C_p, C_curr, reduction, reduction_prev)
            )
            reduction_prev = reduction
            C_pp, C_p = C_p, nodes * C_curr
        self.classifier = nn.Linear(C_p, num_classes)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_normal, self.alpha_reduce]

    def has_normal_cell(self) -> bool:
        return any(not c.reduction for c in self.cells)

    @staticmethod
    def _mix(alpha: torch.Tensor) -> torch.Tensor | list[list[float]]:
        w = F.softmax(alpha, dim=-1)
        if torch.is_grad_enabled() and alpha.requires_grad:
            return w
        return w.detach().tolist()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        s0 = s1 = self.stem(x)
        w_normal = self._mix(self.alpha_normal) if self.has_normal_cell() else None
        w_reduce = self._mix(self.alpha_reduce)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(s1, 1), 1))

    def export(self) -> CellGenotype:
        concat = list(range(2, 2 + self.nodes))
        return CellGenotype(
            normal=derive_cell(F.softmax(self.alpha_normal, -1), self.op_names, self.nodes, self.k),
            normal_concat=concat,
            reduce=derive_cell(F.softmax(self.alpha_reduce, -1), self.op_names, self.nodes, self.k),
            reduce_concat=concat,
        )

    def edge_labels(self) -> list[str]:
        return [f"{j}→{i + 2}" for i in range(self.nodes) for j in range(i + 2)]

    def export_probs(self) -> dict[str, dict[str, dict[str, float]]]:
        out = {}
        for group, alpha in (("normal", self.alpha_normal), ("reduce", self.alpha_reduce)):
            probs = F.softmax(alpha.detach().float(), -1).tolist()
            out[group] = {
                label: dict(zip(self.op_names, row, strict=True))
                for label, row in zip(self.edge_labels(), probs, strict=True)
            }
        return out


__all__ = ["CNNSearchSpace", "DARTS_OPS"]
