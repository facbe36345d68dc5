"""Pictures of genotypes (matplotlib): DARTS cell diagrams and a ProxylessNAS block strip.

A cell is drawn left to right: the inputs ``c_{k-2}`` and ``c_{k-1}``, the intermediate nodes
``0 .. n-1``, and the output ``c_{k}`` (the concatenation, reached by grey unlabelled edges).
Every chosen ``(op, input)`` pair is an arrow labelled with the op's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from nas_lightning.genotype import BlockGenotype, CellGenotype, Gene, RecurrentGenotype  # noqa: E402
from nas_lightning.genotype_views import VALID, cells, input_name, split_nodes  # noqa: E402

OUTPUT_NAME = "c_{k}"
OP_COLOURS = {"conv": "#1f77b4", "pool": "#2ca02c", "skip": "#7f7f7f", "mbconv": "#1f77b4"}


def _colour(op: str) -> str:
    family = "pool" if "pool" in op else "skip" if "skip" in op else "conv"
    return OP_COLOURS[family]


def _node(ax: plt.Axes, xy: tuple[float, float], text: str, colour: str) -> None:
    ax.text(
        *xy,
        f"${text}$" if "{" in text else text,
        ha="center",
        va="center",
        fontsize=11,
        gid=f"node:{text}",
        bbox={"boxstyle": "round,pad=0.4", "fc": colour, "ec": "black", "lw": 1},
        zorder=3,
    )


def _arrow(ax: plt.Axes, a, b, rad: float, colour: str, lw: float, z: int) -> None:
    ax.add_patch(
        FancyArrowPatch(
            a,
            b,
            connectionstyle=f"arc3,rad={rad}",
            arrowstyle="-|>",
            mutation_scale=11,
            color=colour,
            lw=lw,
            shrinkA=13,
            shrinkB=13,
            zorder=z,
        )
    )


def _op_label(ax: plt.Axes, xy: tuple[float, float], op: str, gid: str) -> None:
    ax.text(
        *xy,
        op,
        ha="center",
        va="center",
        fontsize=7,
        color=_colour(op),
        gid=gid,
        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
        zorder=2,
    )


def _layout(n: int) -> tuple[dict[int, tuple[float, float]], tuple[float, float]]:
    """Inputs top-left and bottom-left, nodes on the middle line, the output on the right."""
    pos = {0: (0.0, 1.3), 1: (0.0, -1.3)}
    pos.update({i + 2: (2.4 * (i + 1), 0.0) for i in range(n)})
    return pos, (2.4 * (n + 1), 0.0)


def draw_cell(ax: plt.Axes, gene: Gene, concat: list[int], title: str) -> None:
    """Draw one cell on ``ax``; node texts carry ``gid="node:<name>"``, op labels
    ``gid="edge:<j>-><i>"`` (states: 0, 1 = the inputs, ``i + 2`` = node ``i``).

    Input edges are straight (they pass above or below the middle line), edges between
    nodes that are not neighbours arc above it, and the grey edges into ``c_{k}`` below it.
    """
    nodes = split_nodes(gene, concat, title)
    pos, out = _layout(len(nodes))
    for i, pairs in enumerate(nodes):
        for op, j in pairs:
            (x1, y1), (x2, y2) = pos[j], pos[i + 2]
            rad = -0.35 if j >= 2 and j != i + 1 else 0.0
            _arrow(ax, pos[j], pos[i + 2], rad, _colour(op), 1.5, 1)
            t = 0.5 if j >= 2 else 0.62  # input edges: nearer the node, where they fan out
            mx = x1 + t * (x2 - x1) + rad * (y2 - y1) / 2
            my = y1 + t * (y2 - y1) - rad * (x2 - x1) / 2
            _op_label(ax, (mx, my), op, f"edge:{j}->{i + 2}")
    for c in concat:
        rad = 0.0 if c == len(nodes) + 1 else 0.3
        _arrow(ax, pos[c], out, rad, "#bbbbbb", 1.0, 0)
    for j in (0, 1):
        _node(ax, pos[j], input_name(j), "#9ecae1")
    for i in range(len(nodes)):
        _node(ax, pos[i + 2], str(i), "#fdd0a2")
    _node(ax, out, OUTPUT_NAME, "#c7e9c0")
    ax.set_title(title)
    ax.set_xlim(-0.8, out[0] + 0.8)
    ax.set_ylim(-1.8, 1.8)
    ax.axis("off")


def draw_recurrent(ax: plt.Axes, genotype: RecurrentGenotype) -> None:
    """The recurrent cell on one line: state 0 (highway of ``x_t`` and ``h_{t-1}``), the nodes
    ``1..n`` each reached by its one chosen edge (arcs above the line skip states), and ``h_t``
    (the mean of the ``concat`` states, grey edges below the line). Op labels carry
    ``gid="edge:<j>-><i>"`` like :func:`draw_cell`."""
    n = len(genotype.recurrent)
    pos = {i: (2.0 * i, 0.0) for i in range(1, n + 1)} | {0: (-1.0, 0.0)}  # wide input box
    out = (2.0 * (n + 1), 0.0)
    for i, (op, j) in enumerate(genotype.recurrent, start=1):
        rad = 0.0 if j == i - 1 else -0.4
        _arrow(ax, pos[j], pos[i], rad, _colour(op), 1.5, 1)
        mx = (pos[j][0] + pos[i][0]) / 2
        my = -rad * (pos[i][0] - pos[j][0]) / 2
        _op_label(ax, (mx, my), op, f"edge:{j}->{i}")
    for c in genotype.concat:
        _arrow(ax, pos[c], out, 0.0 if c == n else 0.25, "#bbbbbb", 1.0, 0)
    _node(ax, pos[0], "x_{t}, h_{t-1}", "#9ecae1")
    for i in range(1, n + 1):
        _node(ax, pos[i], str(i), "#fdd0a2")
    _node(ax, out, "h_{t}", "#c7e9c0")
    ax.set_title("recurrent cell")
    ax.set_aspect("equal")  # arc3 bends in display space: label positions assume equal axes
    ax.set_xlim(-2.4, out[0] + 0.8)
    ax.set_ylim(-0.3 * (n + 1) - 0.6, 0.4 * n + 0.8)
    ax.axis("off")


def draw_blocks(ax: plt.Axes, genotype: BlockGenotype) -> None:
    """One box per searchable block, in order, labelled ``<block>\\n<op>`` (``zero``: dashed)."""
    labels = genotype.labels or [str(i) for i in range(len(genotype.blocks))]
    for i, (label, op) in enumerate(zip(labels, genotype.blocks, strict=True)):
        skipped = op == "zero"
        ax.add_patch(
            FancyBboxPatch(
                (i * 1.2, 0),
                1.0,
                1.0,
                boxstyle="round,pad=0.05",
                fc="white" if skipped else "#c6dbef",
                ec="black",
                ls="--" if skipped else "-",
            )
        )
        ax.text(
            i * 1.2 + 0.5,
            0.5,
            f"{label}\n{op}",
            ha="center",
            va="center",
            fontsize=7,
            gid=f"block:{label}",
        )
    ax.set_xlim(-0.2, 1.2 * len(genotype.blocks))
    ax.set_ylim(-0.3, 1.3)
    ax.set_title(f"ProxylessNAS blocks ({sum(op == 'zero' for op in genotype.blocks)} skipped)")
    ax.axis("off")


def genotype_figure(genotype: Any) -> plt.Figure:
    """Normal cell above the reduction cell, the recurrent cell, or a ProxylessNAS block strip."""
    if isinstance(genotype, CellGenotype):
        groups = cells(genotype)
        n = max(len(split_nodes(g, c, name)) for name, (g, c) in groups.items())
        fig, axes = plt.subplots(2, 1, figsize=(2.5 + 2.0 * n, 7.0))
        for ax, (name, (gene, concat)) in zip(axes, groups.items(), strict=True):
            draw_cell(ax, gene, concat, f"{name} cell")
    elif isinstance(genotype, BlockGenotype):
        fig, ax = plt.subplots(figsize=(1.0 + 1.0 * len(genotype.blocks), 2.0))
        draw_blocks(ax, genotype)
    elif isinstance(genotype, RecurrentGenotype):
        fig, ax = plt.subplots(figsize=(2.0 + 1.1 * len(genotype.recurrent), 3.2))
        draw_recurrent(ax, genotype)
    else:
        raise ValueError(f"cannot draw {type(genotype).__name__}; valid: {VALID}")
    fig.tight_layout()
    return fig


def write_diagram(genotype: Any, path: str | Path, dpi: int = 120) -> Path:
    """Save :func:`genotype_figure` as a PNG at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = genotype_figure(genotype)
    try:
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    return path
