"""What one fused mixed-op call computes: the ops by kind, their modules, the rows of ``Z``.

A call mixes the edges leaving ``S`` states (usually one; a DARTS cell's two inputs are ready
together, so their edges can share one call) into ``E`` outputs: output ``e`` sums edge ``e`` of
every source. Branches (one op on one edge of one source) are ordered ``(op, e, s)``.
:func:`fused_plan` returns ``None`` where the fused kernels do not apply (an op it does not
know, a module not built by ``build_op(..., affine=False, preact=True)``, BatchNorms with mixed
flags): then the reference runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn

from nas_lightning.ops.darts_ops import FactorizedReduce
from nas_lightning.ops.fused_bn import can_fuse
from nas_lightning.ops.registry import ZERO

SEP = {"sep_conv_3x3": 3, "sep_conv_5x5": 5}
DIL = {"dil_conv_3x3": 3, "dil_conv_5x5": 5}
POOLS = ("max_pool_3x3", "avg_pool_3x3")
SKIP = "skip_connect"
EdgeOps = Sequence[Mapping[str, nn.Module]]


@dataclass
class Kind:
    """One op (column ``col``) on every edge of every source: ``mods[s][e]``."""

    col: int
    k: int
    mods: list[list[nn.Module]]

    def branches(self) -> list[nn.Module]:
        """The modules in branch order ``(e, s)``."""
        return [src[e] for e in range(len(self.mods[0])) for src in self.mods]


@dataclass
class Plan:
    S: int
    E: int
    stride: int = 1
    sep: list[Kind] = field(default_factory=list)
    dil: list[Kind] = field(default_factory=list)
    fr: Kind | None = None
    pools: list[Kind] = field(default_factory=list)  # mods[s][0]: the shared module
    identity: int | None = None  # column of the identity skip
    rows: list[tuple[int, int | None, int]] = field(default_factory=list)  # (col, edge, source)

    def sep_branches(self) -> list[nn.Module]:
        return [m for kind in self.sep for m in kind.branches()]

    def dil_branches(self) -> list[nn.Module]:
        return [m for kind in self.dil for m in kind.branches()]

    def final_bns(self) -> list[nn.Module]:
        """The last BatchNorm of every row of ``Z``, in row order."""
        bns = [op[6] for op in self.sep_branches()] + [op[2] for op in self.dil_branches()]
        bns += [op.bn for op in self.fr.branches()] if self.fr else []
        return bns + [kind.mods[s][0][1] for kind in self.pools for s in range(self.S)]


def fused_plan(
    op_names: Sequence[str], edge_ops: Sequence[EdgeOps], shared: Sequence[Mapping[str, nn.Module]]
) -> Plan | None:
    """The plan for ``edge_ops[s][e]`` / ``shared[s]`` (see the module docstring)."""
    S, E = len(edge_ops), len(edge_ops[0])
    if any(len(src) != E for src in edge_ops):
        return None
    plan, strides = Plan(S, E), set()
    for col, name in enumerate(op_names):
        if name == ZERO:
            continue
        if name in SEP or name in DIL:
            mods = [[edge[name] for edge in src] for src in edge_ops]
            n_layers = 7 if name in SEP else 3
            flat = [m for src in mods for m in src]
            if any(not isinstance(m, nn.Sequential) or len(m) != n_layers for m in flat):
                return None
            if not all(m.expects_preact for m in flat):
                return None
            strides.update(int(m[0].stride[0]) for m in flat)
            (plan.sep if name in SEP else plan.dil).append(Kind(col, (SEP | DIL)[name], mods))
        elif name == SKIP and name in edge_ops[0][0]:
            mods = [[edge[name] for edge in src] for src in edge_ops]
            flat = [m for src in mods for m in src]
            if not all(isinstance(m, FactorizedReduce) and m.expects_preact for m in flat):
                return None
            plan.fr = Kind(col, 1, mods)
            strides.add(2)
        elif name == SKIP and all(isinstance(sh.get(name), nn.Sequential) for sh in shared):
            if not all(isinstance(sh[name][0], nn.Identity) for sh in shared):
                return None
            plan.identity = col
            strides.add(1)
        elif name in POOLS and all(len(sh.get(name, ())) == 2 for sh in shared):
            plan.pools.append(Kind(col, 3, [[sh[name]] for sh in shared]))
            strides.update(int(sh[name][0].stride) for sh in shared)
        else:
            return None
    first = [op[2] for op in plan.sep_branches()]
    if len(strides) != 1 or not all(can_fuse(g) for g in (first, plan.final_bns()) if g):
        return None
    plan.stride = strides.pop()
    edge_rows = plan.sep + plan.dil + ([plan.fr] if plan.fr else [])
    plan.rows = [(kind.col, e, s) for kind in edge_rows for e in range(E) for s in range(S)]
    plan.rows += [(kind.col, None, s) for kind in plan.pools for s in range(S)]
    return plan
