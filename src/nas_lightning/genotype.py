"""Discrete architectures derived from α, and their JSON form.

``CellGenotype`` follows the DARTS code's ``Genotype`` namedtuple: per cell type a list of
``(op, input_index)`` pairs, two per intermediate node, and the concatenated node indices.
Inputs 0 and 1 are the two previous cells' outputs; node ``i`` is hidden state ``i + 2``.
``RecurrentGenotype`` is the DARTS rnn code's ``Genotype(recurrent, concat)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nas_lightning.genotype_checks import (
    GenotypeError,
    Where,
    check_blocks,
    check_cell,
    check_recurrent,
)
from nas_lightning.ops.registry import ZERO

Gene = list[tuple[str, int]]


@dataclass
class CellGenotype:
    """A DARTS CNN genotype: the normal and the reduction cell."""

    normal: Gene
    normal_concat: list[int]
    reduce: Gene
    reduce_concat: list[int]
    kind: str = field(default="darts_cnn", init=False)

    def ops(self) -> list[str]:
        """Every chosen op, normal cell first (used e.g. to count skip connections)."""
        return [op for op, _ in self.normal] + [op for op, _ in self.reduce]

    def decisions(self) -> list[tuple[tuple[str, int], ...]]:
        """One entry per node (normal cell first): its ``(op, input)`` choices, sorted, since
        :func:`derive_cell` orders a node's inputs by strength, not by identity."""
        out = []
        for gene, concat in ((self.normal, self.normal_concat), (self.reduce, self.reduce_concat)):
            nodes = max(concat, default=1) - 1  # the last node is always concatenated
            k = max(1, len(gene) // max(nodes, 1))
            out += [tuple(sorted(gene[i : i + k])) for i in range(0, len(gene), k)]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "normal": [[op, i] for op, i in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, i] for op, i in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellGenotype:
        try:
            return cls(
                normal=[(str(op), int(i)) for op, i in d["normal"]],
                normal_concat=[int(i) for i in d["normal_concat"]],
                reduce=[(str(op), int(i)) for op, i in d["reduce"]],
                reduce_concat=[int(i) for i in d["reduce_concat"]],
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a DARTS CNN genotype: {d!r} ({e})") from e

    def __str__(self) -> str:
        return (
            f"Genotype(normal={self.normal}, normal_concat={self.normal_concat}, "
            f"reduce={self.reduce}, reduce_concat={self.reduce_concat})"
        )


@dataclass
class BlockGenotype:
    """A ProxylessNAS genotype: the chosen op per searchable block (``zero`` = block skipped).

    ``labels`` name the blocks (as in the α heatmap); ``space`` holds the search space's
    constructor arguments, so ``MobileNetSearchSpace(**g.space).single_path(g)`` rebuilds the net.
    """

    blocks: list[str]
    labels: list[str] = field(default_factory=list)
    space: dict[str, Any] = field(default_factory=dict)
    kind: str = field(default="proxyless", init=False)

    def __post_init__(self) -> None:
        if self.labels and len(self.labels) != len(self.blocks):
            raise ValueError(
                f"{len(self.labels)} labels for {len(self.blocks)} blocks; give one per block"
            )

    def ops(self) -> list[str]:
        return list(self.blocks)

    def decisions(self) -> list[tuple[str]]:
        """One entry per block: its op."""
        return [(op,) for op in self.blocks]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "blocks": list(self.blocks),
            "labels": list(self.labels),
            "space": dict(self.space),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BlockGenotype:
        try:
            blocks = d["blocks"]
            if isinstance(blocks, str) or not all(isinstance(b, str) for b in blocks):
                raise TypeError("blocks must be a list of op names")
            return cls(
                blocks=list(blocks),
                labels=[str(x) for x in d.get("labels") or []],
                space=dict(d.get("space") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a ProxylessNAS block genotype: {d!r} ({e})") from e

    def __str__(self) -> str:
        labels = self.labels or [str(i) for i in range(len(self.blocks))]
        body = ", ".join(f"{lab}={op}" for lab, op in zip(labels, self.blocks, strict=True))
        return f"BlockGenotype({body})"


@dataclass
class RecurrentGenotype:
    """A DARTS recurrent cell: one ``(op, input_index)`` per intermediate node (k = 1).

    State 0 is the highway-gated combination of ``x_t`` and ``h_{t−1}``; node ``i`` is state
    ``i + 1`` and reads one earlier state; the new hidden state is the mean of the ``concat``
    states (every intermediate node)."""

    recurrent: Gene
    concat: list[int]
    kind: str = field(default="darts_rnn", init=False)

    def ops(self) -> list[str]:
        return [op for op, _ in self.recurrent]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "recurrent": [[op, i] for op, i in self.recurrent],
            "concat": list(self.concat),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecurrentGenotype:
        try:
            return cls(
                recurrent=[(str(op), int(i)) for op, i in d["recurrent"]],
                concat=[int(i) for i in d["concat"]],
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a DARTS recurrent genotype: {d!r} ({e})") from e

    def __str__(self) -> str:
        return f"Genotype(recurrent={self.recurrent}, concat={self.concat})"


GENOTYPE_TYPES: dict[str, Any] = {
    "darts_cnn": CellGenotype,
    "darts_rnn": RecurrentGenotype,
    "proxyless": BlockGenotype,
}
GENOTYPE_CHECKS: dict[str, Any] = {
    "darts_cnn": check_cell,
    "darts_rnn": check_recurrent,
    "proxyless": check_blocks,
}


def derive_cell(probs: torch.Tensor, op_names: Sequence[str], nodes: int, k: int = 2) -> Gene:
    """DARTS derivation for one cell.

    ``probs``: softmax(α) with one row per edge, edges ordered node by node (node ``i`` has
    ``i + 2`` inputs). Per node keep the ``k`` inputs whose strongest non-``zero`` op weighs
    most, and take that op on each. Ties go to the lower index, as in the DARTS code.
    """
    non_zero = [c for c, name in enumerate(op_names) if name != ZERO]
    if not non_zero:
        raise ValueError(f"op list {list(op_names)} has no op besides {ZERO!r}")
    expected = sum(i + 2 for i in range(nodes))
    if probs.shape != (expected, len(op_names)):
        raise ValueError(
            f"probs of shape {tuple(probs.shape)}; expected ({expected}, "
            f"{len(op_names)}) for {nodes} nodes"
        )
    if k < 1 or k > 2:
        # node 0 has exactly two candidate inputs (the two previous cells)
        raise ValueError(
            f"k={k} but the first node has only 2 candidate inputs; choose k in [1, 2]"
        )
    p = probs.detach().double().cpu()[:, non_zero]
    gene: Gene = []
    start = 0
    for i in range(nodes):
        n_in = i + 2
        best_w, best_op = p[start : start + n_in].max(dim=1)
        order = sorted(range(n_in), key=lambda j: (-best_w[j].item(), j))
        for j in order[:k]:
            gene.append((op_names[non_zero[int(best_op[j])]], j))
        start += n_in
    return gene


def save_genotype(genotype: Any, path: str | Path) -> None:
    Path(path).write_text(json.dumps(genotype.to_dict(), indent=2) + "\n")


def genotype_from_dict(
    d: dict[str, Any],
    ops: Sequence[str] | Sequence[Sequence[str]] | None = None,
    nodes: int | None = None,
    k: int | None = None,
    where: Where | None = None,
) -> Any:
    """Validate (see :mod:`nas_lightning.genotype_checks`) and build a genotype. ``ops``,
    ``nodes`` and ``k`` hold it to a space's rules (``nodes``/``k``: cell genotypes only; block
    genotypes take ``ops`` per block); by default its own implied shape and the op registry."""
    where = where or Where()
    if not isinstance(d, dict):
        where.fail((), f"a genotype is a JSON object with a 'type' field, not {type(d).__name__}")
    kind = d.get("type")
    if kind not in GENOTYPE_TYPES:
        where.fail(
            ("type",), f"unknown genotype type {kind!r}; valid types: {sorted(GENOTYPE_TYPES)}"
        )
    GENOTYPE_CHECKS[kind](d, where, ops=ops, nodes=nodes, k=k)
    return GENOTYPE_TYPES[kind].from_dict(d)


def load_genotype(
    path: str | Path,
    ops: Sequence[str] | Sequence[Sequence[str]] | None = None,
    nodes: int | None = None,
    k: int | None = None,
) -> Any:
    """Read and validate a genotype written by :func:`save_genotype` (e.g. for a retrain step);
    errors name the file and line. See :func:`genotype_from_dict` for ``ops``/``nodes``/``k``."""
    text = Path(path).read_text()
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise GenotypeError(
            f"{path}:{e.lineno}: not valid JSON: {e.msg} (column {e.colno})"
        ) from None
    return genotype_from_dict(d, ops, nodes, k, where=Where(str(path), text))


if __name__ == "__main__":  # python -m nas_lightning.genotype show <genotype.json>
    from nas_lightning.genotype_show import main

    raise SystemExit(main())
