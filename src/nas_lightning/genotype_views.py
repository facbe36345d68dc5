"""Read-only views of genotypes: a cell's nodes, readable text, and the heatmap cells picked.

Plain Python over :mod:`nas_lightning.genotype`, shared by the evaluation network, the cell
diagram, the α heatmaps and ``python -m nas_lightning.genotype show``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nas_lightning.genotype import BlockGenotype, CellGenotype, Gene, RecurrentGenotype
from nas_lightning.spaces import cell, rnn_cell

INPUT_NAMES = ("c_{k-2}", "c_{k-1}")
VALID = "CellGenotype, BlockGenotype, RecurrentGenotype"


def split_nodes(gene: Gene, concat: Sequence[int], cell: str = "") -> list[list[tuple[str, int]]]:
    """A cell's ``(op, input)`` pairs grouped per intermediate node.

    Node ``i`` is hidden state ``i + 2``; there are ``max(concat) - 1`` nodes, each with the same
    number ``k`` of pairs, listed node by node (the DARTS ``Genotype`` layout).
    """
    nodes = max(concat) - 1 if concat else 0
    if nodes < 1 or not gene or len(gene) % nodes:
        raise ValueError(
            f"{cell} cell: {len(gene)} (op, input) pairs for concat {list(concat)} "
            f"({nodes} nodes); give the same number of pairs for every node, node by node"
        )
    k = len(gene) // nodes
    return [list(gene[i * k : (i + 1) * k]) for i in range(nodes)]


def input_name(j: int) -> str:
    """State ``j`` of a cell: the two previous cells' outputs, then node ``j - 2``."""
    return INPUT_NAMES[j] if j < 2 else str(j - 2)


def _text_name(j: int) -> str:
    return input_name(j) if j < 2 else f"node {j - 2}"


def cells(genotype: CellGenotype) -> dict[str, tuple[Gene, list[int]]]:
    return {
        "normal": (genotype.normal, genotype.normal_concat),
        "reduce": (genotype.reduce, genotype.reduce_concat),
    }


def picks(genotype: Any) -> dict[str, set[tuple[str, str]]]:
    """``{heatmap group: {(row label, op)}}`` of what the genotype chose: the spaces' own row
    labels (``"j→i"``, edge from state ``j`` to state ``i``) for DARTS and recurrent cells, block
    labels for ProxylessNAS blocks."""
    if isinstance(genotype, CellGenotype):
        return {
            group: {
                (cell.edge_label(i, j), op)
                for i, pairs in enumerate(split_nodes(gene, concat, group))
                for op, j in pairs
            }
            for group, (gene, concat) in cells(genotype).items()
        }
    if isinstance(genotype, BlockGenotype):
        labels = genotype.labels or [str(i) for i in range(len(genotype.blocks))]
        return {"blocks": set(zip(labels, genotype.blocks, strict=True))}
    if isinstance(genotype, RecurrentGenotype):
        rows = {(rnn_cell.edge_label(i, j), op) for i, (op, j) in enumerate(genotype.recurrent)}
        return {rnn_cell.GROUP: rows}
    raise ValueError(f"unknown genotype {type(genotype).__name__}; valid: {VALID}")


def describe(genotype: Any) -> str:
    """Multi-line text: per cell and node its inputs and ops, or per block its op."""
    if isinstance(genotype, CellGenotype):
        lines = ["DARTS cell genotype"]
        for group, (gene, concat) in cells(genotype).items():
            outs = ", ".join(_text_name(c) for c in concat)
            lines.append(f"{group} cell: c_{{k}} = concat({outs})")
            for i, pairs in enumerate(split_nodes(gene, concat, group)):
                body = " + ".join(f"{op}({_text_name(j)})" for op, j in pairs)
                lines.append(f"  node {i} = {body}")
        return "\n".join(lines)
    if isinstance(genotype, BlockGenotype):
        labels = genotype.labels or [str(i) for i in range(len(genotype.blocks))]
        skipped = sum(op == "zero" for op in genotype.blocks)
        lines = [f"ProxylessNAS block genotype: {len(genotype.blocks)} blocks, {skipped} skipped"]
        width = max(len(x) for x in labels) if labels else 0
        for label, op in zip(labels, genotype.blocks, strict=True):
            note = "  (block skipped: identity)" if op == "zero" else ""
            lines.append(f"  {label:<{width}}  {op}{note}")
        return "\n".join(lines)
    if isinstance(genotype, RecurrentGenotype):
        lines = ["DARTS recurrent cell genotype"]
        lines.append(
            "state 0 = highway(x_t, h_{t-1}); h_t = mean("
            + ", ".join(f"state {c}" for c in genotype.concat)
            + ")"
        )
        for i, (op, j) in enumerate(genotype.recurrent):
            lines.append(f"  state {i + 1} = {op}(state {j})")
        return "\n".join(lines)
    raise ValueError(f"unknown genotype {type(genotype).__name__}; valid: {VALID}")
