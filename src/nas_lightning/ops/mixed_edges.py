"""The softmax-mixed edges that leave one state, as fused kernels: dispatch and CPU policy.

``mix_edges([h], op_names, [edge_ops], [shared], [weights], fused)`` computes, for ``E`` edges
reading the same (pre-activation) state ``h``, the outputs ``Σ_k weights[e][k]·op_k(h)``:

- ``edge_ops[e][name]``: edge ``e``'s module for op ``name`` when it has weights (sep/dil convs,
  the FactorizedReduce skip at stride 2), built by ``build_op(name, C, stride, affine=...,
  preact=True)`` (it expects a ReLU'd input);
- ``shared[name]``: weightless ops (pool + BN, the identity skip), evaluated once for all edges;
- ``weights``: an ``[E, n_ops]`` tensor (α-step: differentiable) or Python floats (α frozen);
  the ``none`` column is never evaluated.

It returns ``None`` where the fused kernels do not apply (an op or module layout
``ops/fused_plan.py`` does not know, BatchNorms with mixed flags) or do not pay
(:func:`fuse_on`); the caller then runs the ops one by one (``spaces/plans.py``), which is the
same function of the same parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from nas_lightning.ops.fused_plan import Plan, fused_plan
from nas_lightning.ops.mixed_fused import mix_fused

CPU_FUSE_MAX = 1 << 21  # elements of the largest fused tensor (rows × B·C·H·W) fused on CPU


def fuse_on(plan: Plan, h: Tensor) -> bool:
    """Whether the fused kernels pay on ``h``'s device: always on accelerators (a search step
    there is bound by kernel launches); on CPU only while the call's fused tensors stay small
    (``CPU_FUSE_MAX`` elements), as per-op tensors otherwise stay in cache between the ops of
    one chain and win."""
    if h.device.type != "cpu":
        return True
    B, C, H, W = h.shape
    out = ((H - 1) // plan.stride + 1) * ((W - 1) // plan.stride + 1)
    return B * C * out * max(len(plan.rows), 1) <= CPU_FUSE_MAX


def mix_edges(
    hs: Sequence[Tensor],
    op_names: Sequence[str],
    edge_ops: Sequence[Sequence[Mapping[str, nn.Module]]],
    shared: Sequence[Mapping[str, nn.Module]],
    weights: Tensor | Sequence[Sequence[Sequence[float]]],
    fused: bool | None = None,
) -> list[Tensor] | None:
    """The fused outputs (see the module docstring) for ``S`` states ``hs`` of one shape:
    ``out[e] = Σ_s Σ_k weights[s][e][k]·op_k(hs[s])`` with ``edge_ops[s][e]``, ``shared[s]``
    (``S = 2``: a DARTS cell's two inputs, which feed the same nodes). ``fused``: ``True`` fuses
    wherever the plan allows, ``None`` only where :func:`fuse_on` says it pays, ``False``
    never."""
    if fused is False or any(h.dim() != 4 or h.shape != hs[0].shape for h in hs):
        return None
    plan = fused_plan(op_names, edge_ops, shared)
    if plan is None or not (fused or fuse_on(plan, hs[0])):
        return None
    return mix_fused(plan, list(hs), weights).outputs()


__all__ = ["CPU_FUSE_MAX", "fuse_on", "mix_edges"]
