"""Which ops and architectures to measure, read from a space's latency interface.

A space offers ``latency_specs()`` (per decision key, per choice point with that key, the
OpDesc of every candidate), ``fixed_specs()`` (stem, head), ``single_path(choice)`` and
``sample_choice(generator)`` (one candidate index per decision); these helpers turn that into
the op lists that ``profile``, ``fit`` and ``check`` measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import torch
from torch import nn

from nas_lightning.latency.flops import op_macs
from nas_lightning.ops import OpDesc, is_zero, op_spec

CHANNEL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
SIZE_SCALES = (0.5, 1.0, 2.0)


class LatencySpace(Protocol):
    def latency_specs(self) -> dict[str, list[list[OpDesc]]]: ...
    def fixed_specs(self) -> list[OpDesc]: ...
    def single_path(self, choice: list[int]) -> nn.Module: ...
    def sample_choice(self, generator: torch.Generator) -> list[int]: ...


def space_ops(space: LatencySpace) -> list[OpDesc]:
    """Every distinct op a network of ``space`` can contain (fixed parts first)."""
    specs = space.latency_specs().values()
    ops = list(space.fixed_specs()) + [d for inst in specs for c in inst for d in c]
    return list({d.key(): d for d in ops}.values())


def architecture_ops(space: LatencySpace, choice: Sequence[int]) -> list[OpDesc]:
    """The ops of one architecture: the fixed parts plus the chosen candidate at every choice
    point (all choice points sharing a decision key take the same candidate)."""
    specs = space.latency_specs()
    if len(choice) != len(specs):
        raise ValueError(
            f"choice has {len(choice)} entries but the space has {len(specs)} "
            f"searchable blocks: {list(specs)}"
        )
    ops = list(space.fixed_specs())
    for (label, instances), i in zip(specs.items(), choice, strict=True):
        n = len(instances[0])
        if not 0 <= int(i) < n:
            raise ValueError(f"choice {i} for {label!r} is out of range; valid: 0..{n - 1}")
        ops += [cands[int(i)] for cands in instances]
    return ops


def sample_choices(space: LatencySpace, n: int, seed: int, spread: float = 0.0) -> list[list[int]]:
    """``n`` random architectures (reproducible for a given ``seed``).

    ``spread = 0``: uniform per block. Uniform networks of many blocks all cost about the same
    (a sum of many independent choices), so ranking them mostly ranks timing noise. With
    ``spread > 0`` architecture ``i`` tilts every block towards cheap or expensive candidates
    (``p ∝ exp(t_i·z)``, ``z`` = standardised log-MACs, ``t_i`` evenly from ``-spread`` to
    ``+spread``): the set spans small to large networks, as a search trajectory does.
    """
    gen = torch.Generator().manual_seed(int(seed))
    if spread <= 0:
        return [list(space.sample_choice(gen)) for _ in range(n)]
    z = []
    for instances in space.latency_specs().values():
        macs = [sum(float(op_macs(c[j])) for c in instances) for j in range(len(instances[0]))]
        cost = torch.tensor(macs).log1p()
        z.append((cost - cost.mean()) / cost.std().clamp_min(1e-9))
    out = []
    for i in range(n):
        tilt = spread * (2 * (i + 0.5) / n - 1)
        out.append(
            [int(torch.multinomial(torch.softmax(tilt * zb, 0), 1, generator=gen)) for zb in z]
        )
    return out


def _pick(seq: Sequence[Any], gen: torch.Generator) -> Any:
    return seq[int(torch.randint(len(seq), (1,), generator=gen))]


def variants(ops: Sequence[OpDesc]) -> dict[str, dict[str, list[int]]]:
    """Per op type, the kernels and expansions the space's candidates of that type use."""
    out: dict[str, dict[str, set[int]]] = {}
    for d in ops:
        v = out.setdefault(d.op, {"kernel": set(), "expand": set()})
        v["kernel"].add(d.kernel)
        v["expand"].add(d.expand)
    return {op: {k: sorted(vals) for k, vals in v.items()} for op, v in out.items()}


def perturb(
    desc: OpDesc, gen: torch.Generator, grid: dict[str, dict[str, list[int]]] | None = None
) -> OpDesc:
    """A nearby op: scaled widths and feature-map size, and any kernel/expansion that the
    space's candidates of the same type use (``grid``, from :func:`variants`)."""
    scale = _pick(SIZE_SCALES, gen)
    h, w = (max(1, round(s * scale)) for s in desc.in_size)
    c_in = max(1, round(desc.in_channels * _pick(CHANNEL_SCALES, gen)))
    if desc.op == "pool_linear":  # the classifier width is the dataset's, keep it
        return replace(desc, in_channels=c_in, in_size=(h, w))
    c_out = max(1, round(desc.out_channels * _pick(CHANNEL_SCALES, gen)))
    if "cell" in op_spec(desc.op).roles:  # cell ops keep their width (C -> C)
        c_out = c_in
    s = desc.stride
    extra = {}
    if grid and desc.op in grid:
        extra = {k: _pick(vals, gen) for k, vals in grid[desc.op].items()}
    return replace(
        desc,
        in_channels=c_in,
        out_channels=c_out,
        in_size=(h, w),
        out_size=(-(-h // s), -(-w // s)),
        **extra,
    )


def training_ops(
    space: LatencySpace, n: int, seed: int, exact_fraction: float = 0.5
) -> list[OpDesc]:
    """``n`` distinct non-zero ops to train a predictor on.

    About ``exact_fraction`` of them are ops of sampled architectures (so the predictor is
    accurate where the search needs it); the rest perturb widths, feature-map size, kernel and
    expansion so it also covers shapes the space does not contain exactly.
    """
    if n < 1 or not 0.0 <= exact_fraction <= 1.0:
        raise ValueError(
            f"need n >= 1 and 0 <= exact_fraction <= 1, got n={n}, exact_fraction={exact_fraction}"
        )
    gen = torch.Generator().manual_seed(int(seed))
    pool = [d for d in space_ops(space) if not is_zero(d)]
    grid = variants(pool)
    out: dict[str, OpDesc] = {}
    n_exact = min(int(n * exact_fraction), len(pool))
    for d in space.fixed_specs():
        if len(out) < n_exact:
            out.setdefault(d.key(), d)
    for _ in range(100 * n):  # bounded: a few candidates may never be drawn
        if len(out) >= n_exact:
            break
        for d in architecture_ops(space, space.sample_choice(gen)):
            if not is_zero(d) and len(out) < n_exact:
                out.setdefault(d.key(), d)
    for _ in range(100 * n):
        if len(out) >= n:
            break
        d = perturb(_pick(pool, gen), gen, grid)
        out.setdefault(d.key(), d)
    return list(out.values())
