"""The DARTS CNN cell search space (Liu et al. 2019, §2.1 and the quark0/darts search model).

The space declares one :class:`~nas_lightning.spaces.choices.OpChoice` per edge (keys
``normal_e<i>`` / ``reduce_e<i>``, shared by all cells of a type) and one input choice per node;
the search algorithm installs the mixing. Efficiency that does not depend on the mixing lives here
and in :mod:`.cell`: weightless ops (identity, pool + non-affine BN) exist once per hidden state
and are shared by every edge leaving it, and the leading ReLU of the conv ops runs once per state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas_lightning.devices import check_channels_last, use_channels_last
from nas_lightning.genotype import CellGenotype, derive_cell
from nas_lightning.ops import OpDesc, describe, validate_ops
from nas_lightning.spaces.base import Probs, SearchSpace
from nas_lightning.spaces.cell import SearchCell, edge_index, edge_label
from nas_lightning.spaces.choices import Decision, InputChoice

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
        channels_last: bool | str = "auto",
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
        self.config = dict(
            in_channels=in_channels,
            num_classes=num_classes,
            init_channels=init_channels,
            layers=layers,
            nodes=nodes,
            ops=list(ops),
            stem_multiplier=stem_multiplier,
            k=k,
            channels_last=channels_last,
            input_size=list(input_size) if input_size is not None else None,
        )
        self.op_names = validate_ops(ops)
        self.nodes, self.k, self.layers = nodes, k, layers
        self.num_classes = num_classes
        # resolution-agnostic (reductions use ceil(H/2)); kept for reports and latency models
        self.input_size = tuple(input_size) if input_size is not None else None
        self.channels_last = check_channels_last(channels_last)
        self.reduction_layers = sorted({layers // 3, 2 * layers // 3})

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
                SearchCell(self.op_names, nodes, C_pp, C_p, C_curr, reduction, reduction_prev, k)
            )
            reduction_prev = reduction
            C_pp, C_p = C_p, nodes * C_curr
        self.classifier = nn.Linear(C_p, num_classes)
        self._fixed: list[OpDesc] = []
        if self.input_size is not None:
            self._describe(in_channels, stem_multiplier * init_channels)
        if self.channels_last is True:
            self.to(memory_format=torch.channels_last)

    def _describe(self, in_channels: int, c_stem: int) -> None:
        """Op descriptions at the real feature-map sizes, for latency models (ProxylessNAS on
        this space prices every edge). Preprocessing 1×1 convs and FactorizedReduce are priced
        as ``conv`` ops, the stem as a 3×3 ``conv``, the head as ``pool_linear``."""
        size = tuple(self.input_size)
        self._fixed = [describe("conv", in_channels, c_stem, size, 1, kernel=3)]
        sizes = [size, size]  # resolutions of the previous two cell outputs
        for cell in self.cells:
            cur = sizes[-1]
            out = tuple(-(-s // 2) for s in cur) if cell.reduction else cur
            pre0 = cell.pre0
            c_pp = pre0.conv_1.in_channels if hasattr(pre0, "conv_1") else pre0[1].in_channels
            stride0 = 2 if sizes[-2] != cur else 1
            self._fixed += [
                describe("conv", c_pp, cell.C, sizes[-2], stride0, kernel=1),
                describe("conv", cell.pre1[1].in_channels, cell.C, cur, 1, kernel=1),
            ]
            for j, group in enumerate(cell.sources):
                in_size = cur if j < 2 else out
                for cp in group.points:
                    cp.descs = [
                        describe(n, cell.C, cell.C, in_size, cp.stride) for n in cp.op_names
                    ]
            sizes = [sizes[-1], out]
        c_last = self.classifier.in_features
        self._fixed.append(describe("pool_linear", c_last, self.num_classes, sizes[-1]))

    def fixed_specs(self) -> list[OpDesc]:
        if self.input_size is None:
            raise ValueError("space.input_size is unknown (None): latency specs need (H, W)")
        return list(self._fixed)

    def has_normal_cell(self) -> bool:
        return any(not c.reduction for c in self.cells)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # "auto" follows the device: an NHWC input makes every conv and pool run NHWC on CPU
        s0 = s1 = self.stem(x)
        if use_channels_last(self.channels_last, x.device):  # every later conv then runs NHWC
            s0 = s1 = s0.contiguous(memory_format=torch.channels_last)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(s1, 1), 1))

    def decisions(self) -> list[Decision]:
        """Both cell types' edges, even when the network has no normal cell (too few layers):
        the genotype always names both cells."""
        return [
            Decision(f"{group}_e{edge_index(i, j)}", group, edge_label(i, j), tuple(self.op_names))
            for group in ("normal", "reduce")
            for i in range(self.nodes)
            for j in range(i + 2)
        ]

    def node_choices(self) -> list[InputChoice]:
        return [
            InputChoice(f"{group}_n{i}", group, i + 2, min(self.k, i + 2))
            for group in ("normal", "reduce")
            for i in range(self.nodes)
        ]

    def cell_probs(self, probs: Probs, group: str) -> torch.Tensor:
        """``[edges, ops]`` matrix of one cell type's probabilities (α-row order)."""
        n_edges = sum(i + 2 for i in range(self.nodes))
        return torch.stack([probs[f"{group}_e{e}"].detach() for e in range(n_edges)])

    def derive(self, probs: Probs, input_weights: Probs | None = None) -> CellGenotype:
        """DARTS derivation per cell type; ``input_weights`` (PC-DARTS β) scale each edge's
        probabilities before ranking, as in the PC-DARTS code."""
        concat = list(range(2, 2 + self.nodes))
        genes = {}
        for group in ("normal", "reduce"):
            p = self.cell_probs(probs, group)
            if input_weights is not None:
                scale = torch.cat(
                    [input_weights[f"{group}_n{i}"].detach().to(p) for i in range(self.nodes)]
                )
                p = p * scale[:, None]
            genes[group] = derive_cell(p, self.op_names, self.nodes, self.k)
        return CellGenotype(genes["normal"], concat, genes["reduce"], concat)


__all__ = ["CNNSearchSpace", "DARTS_OPS"]
