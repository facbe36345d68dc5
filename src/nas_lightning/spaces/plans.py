"""How one choice point runs under a *plan*: the per-forward decision a mixing strategy makes.

Mixing strategies (``nas_lightning.algos.mixing``) decide the plans; executing them is part of
the choice-point machinery, so it lives with the spaces (which also run fixed paths alone).

A plan, per decision key:

- ``int k``: run candidate ``k`` only (single path; a zero op skips the choice point);
- a float sequence: a fixed mix with fused adds and no α graph (α frozen; zero weights skipped);
- a 1-D tensor: a differentiable mix such as softmax(α);
- :class:`Hard`: Gumbel straight-through — only ``index`` runs, scaled by ``weights[index]``
  (exactly 1 in value, with the soft sample's gradient);
- :class:`GatePlan`: BinaryConnect gates — only ``active`` runs with autograd; ``others`` run
  without it and enter multiplied by their gate (0), so the output is the active path's while
  autograd still gives ``∂L/∂g_j = ⟨∂L/∂out, o_j⟩`` for every listed path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nas_lightning.ops.mixed_edges import mix_edges
from nas_lightning.spaces.choices import ChoiceGroup, OpChoice


@dataclass
class GatePlan:
    """Binary gates of one decision: ``gates`` is one-hot at ``active`` and requires grad."""

    gates: Tensor
    active: int
    others: tuple[int, ...] = ()


@dataclass
class Hard:
    """A straight-through hard sample: ``weights`` is one-hot in value, soft in gradient."""

    index: int
    weights: Tensor


Plan = int | Sequence[float] | Tensor | GatePlan | Hard


def _accumulate(acc: Tensor | None, out: Tensor, w: float | Tensor) -> Tensor:
    if isinstance(w, float):
        if acc is None:
            return out if w == 1.0 else out * w
        return torch.add(acc, out, alpha=w)
    if out.dtype != w.dtype:  # mixed precision: the α-weighted sum (and ∂L/∂w) stays in fp32
        out = out.to(w.dtype)
    return out * w if acc is None else acc + out * w


def mix(cp: OpChoice, weights: Sequence[float] | Tensor, x: Tensor, cache: dict) -> Tensor | None:
    """``Σ_k w_k · o_k(x)`` over the non-zero candidates (float weights of 0 are not run)."""
    if len(weights) != len(cp):
        raise ValueError(f"choice {cp.key!r}: {len(weights)} weights for {len(cp)} candidates")
    acc = None
    for k, w in enumerate(weights):
        if k == cp.zero_index or (isinstance(w, float) and w == 0.0):
            continue
        out = cp.run(k, x, cache)
        acc = _accumulate(acc, out, w)
    return acc


def gated(cp: OpChoice, plan: GatePlan, x: Tensor, cache: dict) -> Tensor | None:
    g = plan.gates
    active = cp.run(plan.active, x, cache)
    acc = None if active is None else active * g[plan.active]
    with torch.no_grad():  # paths run only for their gate gradient ⟨∂L/∂out, o_j⟩
        detached: dict = {}
        others = [(j, cp.run(j, x.detach(), detached)) for j in plan.others if j != plan.active]
    for j, o in others:
        if o is not None:
            acc = o * g[j] if acc is None else acc + o * g[j]
    return acc


def execute(cp: OpChoice, plan: Plan, x: Tensor, cache: dict) -> Tensor | None:
    """The output of choice point ``cp`` on ``x`` under ``plan`` (``None``: exactly zero)."""
    if isinstance(plan, int):
        if not 0 <= plan < len(cp):
            raise ValueError(f"choice {cp.key!r}: path {plan} invalid; valid: 0..{len(cp) - 1}")
        return cp.run(plan, x, cache)
    if isinstance(plan, Hard):
        out = cp.run(plan.index, x, cache)
        return None if out is None else out * plan.weights[plan.index]
    if isinstance(plan, GatePlan):
        return gated(cp, plan, x, cache)
    return mix(cp, plan, x, cache)


def execute_group(
    group: ChoiceGroup, plans: Sequence[Plan], x: Tensor, fused: bool | None = None
) -> list[Tensor | None]:
    """Every choice point of ``group`` on ``x`` under its plan. Mixes run as one fused call
    (``ops/mixed_edges.py``: all candidates of all points as a few batched kernels) where the
    fused kernels apply and ``fused`` allows it (``None``: where they pay on ``x``'s device);
    otherwise, and for single paths, point by point, sharing weightless outputs and the ReLU."""
    outs = fused_sum([group], [plans], [x], fused)
    if outs is not None:
        return outs
    cache: dict = {}
    return [execute(cp, plan, x, cache) for cp, plan in zip(group.points, plans, strict=True)]


def fused_sum(
    groups: Sequence[ChoiceGroup],
    plans: Sequence[Sequence[Plan]],
    xs: Sequence[Tensor],
    fused: bool | None,
) -> list[Tensor] | None:
    """``out[e] = Σ_g mix of point e of group g`` in one fused call (groups with as many points
    and the same candidates), or ``None`` where it does not apply (single paths, another op
    list, ``fused`` / ``mixed_edges.fuse_on`` says no): then run them one by one."""
    flat = [p for ps in plans for p in ps]
    points = [list(g.points) for g in groups]
    names = {tuple(p.op_names) for ps in points for p in ps}
    if fused is False or len(names) != 1 or len({len(ps) for ps in points}) != 1:
        return None
    if all(torch.is_tensor(p) for p in flat):
        weights = torch.stack(flat).view(len(groups), len(points[0]), -1)
    elif all(isinstance(p, Sequence) and not isinstance(p, str) for p in flat):
        weights = [[list(map(float, p)) for p in ps] for ps in plans]
    else:  # single paths (ints, Hard, GatePlan) run op by op
        return None
    ops = [[p.ops for p in ps] for ps in points]
    shared = [dict(g.shared) for g in groups]
    return mix_edges(xs, points[0][0].op_names, ops, shared, weights, fused)


class FixedPlans:
    """A minimal binder running every choice point under fixed plans (no α, no strategy)."""

    def __init__(self, plans: dict[str, Plan]):
        self.plans = plans

    def mix(self, cp: OpChoice, x: Tensor) -> Tensor | None:
        return execute(cp, self.plans[cp.key], x, {})

    def mix_group(self, group: ChoiceGroup, x: Tensor) -> list[Tensor | None]:
        return execute_group(group, [self.plans[cp.key] for cp in group.points], x)

    def aggregate(self, node, inputs: list[Tensor | None]) -> Tensor | None:
        return sum_present(inputs)


def sum_present(inputs: Sequence[Tensor | None]) -> Tensor | None:
    """The sum of the inputs that are not ``None`` (``None`` if all are)."""
    out = None
    for t in inputs:
        if t is not None:
            out = t if out is None else out + t
    return out


__all__ = [
    "FixedPlans",
    "GatePlan",
    "Hard",
    "Plan",
    "execute",
    "execute_group",
    "fused_sum",
    "gated",
    "mix",
    "sum_present",
]
