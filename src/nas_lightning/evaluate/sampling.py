"""Random genotypes under the search's own derivation constraints (the baseline a search must beat).

DARTS: every node keeps ``k`` inputs from distinct predecessors (the two cell inputs and the
earlier nodes), each with an op drawn uniformly from the candidates other than ``none``.
ProxylessNAS: one candidate per block, uniformly among that block's candidates (``zero`` — skip
the block — included where the space offers it, as the search's argmax may pick it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from nas_lightning.genotype import BlockGenotype, CellGenotype, Gene
from nas_lightning.genotype_views import split_nodes
from nas_lightning.ops import ZERO, validate_ops


def random_cell_gene(ops: Sequence[str], nodes: int, k: int, rng: random.Random) -> Gene:
    """``k`` distinct inputs per node (node ``i`` chooses among states ``0 .. i+1``)."""
    gene: Gene = []
    for i in range(nodes):
        for j in sorted(rng.sample(range(i + 2), k)):
            gene.append((rng.choice(list(ops)), j))
    return gene


def random_cell_genotype(
    ops: Sequence[str], nodes: int = 4, k: int = 2, rng: random.Random | None = None
) -> CellGenotype:
    """A uniformly random DARTS genotype over ``ops`` (``none`` is never chosen)."""
    rng = rng or random.Random()
    candidates = [op for op in validate_ops(ops) if op != ZERO]
    if nodes < 1 or not 1 <= k <= 2:
        raise ValueError(f"nodes={nodes}, k={k}: need nodes >= 1 and k in [1, 2]")
    concat = list(range(2, 2 + nodes))
    return CellGenotype(
        normal=random_cell_gene(candidates, nodes, k, rng),
        normal_concat=concat,
        reduce=random_cell_gene(candidates, nodes, k, rng),
        reduce_concat=list(concat),
    )


def random_block_genotype(space: dict[str, Any], rng: random.Random | None = None) -> BlockGenotype:
    """One uniformly random candidate per block of ``MobileNetSearchSpace(**space)``."""
    from nas_lightning.spaces.mobilenet import MobileNetSearchSpace

    rng = rng or random.Random()
    net = MobileNetSearchSpace(**space)
    return BlockGenotype(
        blocks=[rng.choice(names) for names in net.op_names_per_block()],
        labels=net.block_labels(),
        space=dict(space),
    )


def sample_like(
    searched: Any, n: int, seed: int, ops: Sequence[str] | None = None, k: int | None = None
) -> list[Any]:
    """``n`` random genotypes of the searched genotype's kind and shape (its node count and
    ``k``, or its MobileNet space); DARTS ops come from ``ops`` (the search space's list)."""
    rng = random.Random(seed)
    if isinstance(searched, CellGenotype):
        if ops is None:
            raise ValueError("sampling DARTS genotypes needs the candidate ops (space.ops)")
        nodes = split_nodes(searched.normal, searched.normal_concat, "normal")
        k_found = len(nodes[0])
        if k is not None and k != k_found:
            raise ValueError(
                f"the searched genotype keeps {k_found} inputs per node but space.k={k}; "
                f"set space.k={k_found} (the searched space)"
            )
        return [random_cell_genotype(ops, len(nodes), k_found, rng) for _ in range(n)]
    if isinstance(searched, BlockGenotype):
        if not searched.space:
            raise ValueError("the searched BlockGenotype has no 'space' to sample from")
        return [random_block_genotype(searched.space, rng) for _ in range(n)]
    raise ValueError(
        f"cannot sample like {type(searched).__name__}; valid: CellGenotype, BlockGenotype"
    )
