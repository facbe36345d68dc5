"""The fused mixed op: every candidate op of every edge of a call as a few batched kernels.

Same function and parameters as the reference (``ops/mixed_edges.py``): each op's own modules
are read at every call, so ``functional_call``, ``state_dict`` and the derived network see them
as before; only the kernels differ. For a :class:`~nas_lightning.ops.fused_plan.Plan` with
``r = relu(h)`` (``h``: the sources joined along channels):

1. the first depthwise conv of every sep (resp. dil) op of every edge reads ``r``: one conv
   with a channel multiplier, 3×3 kernels zero-padded to 5×5 when both sizes are present
   (dil: dilation 2; at stride 2 only the even rows/columns are read, so undilated there);
2. its output is reordered branch-major (one copy) for one grouped 1×1 conv over all
   branches, then one BatchNorm; the sep ops' second half is one ReLU, one depthwise conv (all
   branches), one grouped 1×1 conv;
3. stride 2: every edge's FactorizedReduce is two 1×1 convs; the pools run once per call;
4. the inputs of every op's last BatchNorm are concatenated (one copy) into ``Z``, normalised
   by one BatchNorm, and the outputs are one matrix product ``Z @ Wᵀ`` (``W[e, j]``: the
   weight of row j's op on edge e, zero for another edge's row), plus the identity's
   ``h @ w_id`` and the running sums ``acc`` in the same ``addmm``.

Channels_last inputs keep ``Z`` channel-major (rows innermost), so the product is a plain
``[N·C, J] @ [J, E]``; NCHW keeps rows outermost and batches the product over images.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nas_lightning.ops import fused_layout as L
from nas_lightning.ops.fused_bn import batch_norm_concat
from nas_lightning.ops.fused_conv import conv2d
from nas_lightning.ops.fused_plan import Kind, Plan
from nas_lightning.ops.fused_repeat import depthwise_repeated


@dataclass
class Packed:
    """Outputs of a call: ``[N·C, E]`` (channels_last) or ``[B, E, C·H·W]`` (NCHW)."""

    data: Tensor
    shape: tuple[int, int, int, int]  # B, C, H, W of one output
    cl: bool

    def outputs(self) -> list[Tensor]:
        B, C, H, W = self.shape
        if self.cl:
            return list(self.data.view(B, H, W, C, -1).permute(4, 0, 3, 1, 2).unbind(0))
        return list(self.data.view(B, -1, C, H, W).unbind(1))

    def first(self) -> Tensor:
        """Output 0 (a finished node, in a cell)."""
        B, C, H, W = self.shape
        if self.cl:
            return self.data[:, 0].view(B, H, W, C).permute(0, 3, 1, 2)
        return self.data[:, 0].view(B, C, H, W)

    def rest(self) -> Packed:
        """Outputs 1.. as the ``acc`` of the next call."""
        return Packed(self.data[:, 1:], self.shape, self.cl)

    @staticmethod
    def pack(outputs: list[Tensor], acc: Packed | None = None) -> Packed:
        """``outputs`` (``[B, C, H, W]`` each, plus ``acc``) in the packed layout."""
        B, C, H, W = outputs[0].shape
        cl = L.channels_last(outputs[0]) if acc is None else acc.cl
        if cl:
            data = torch.stack([o.permute(0, 2, 3, 1) for o in outputs], 4).view(-1, len(outputs))
        else:
            data = torch.stack(outputs, 1).view(B, len(outputs), -1)
        return Packed(data if acc is None else data + acc.data, (B, C, H, W), cl)


def mix_fused(
    plan: Plan,
    hs: list[Tensor],
    weights,
    acc: Packed | None = None,
    relu_h: Tensor | None = None,
) -> Packed:
    """``out[e] = acc[e] + Σ_s Σ_k weights[s][e][k]·op_k(hs[s])`` for a :func:`fused_plan`
    (``acc``: a previous :meth:`Packed.rest`; ``relu_h``: ``relu(hs[0])`` if ``S = 1``)."""
    cl = L.channels_last(hs[0]) if acc is None else acc.cl
    B, C = hs[0].shape[:2]
    h = L.join_sources(hs)
    pre: list[Tensor] = []  # inputs of every row's last BatchNorm, branch-major blocks
    if plan.sep or plan.dil or plan.fr:
        r = F.relu(h) if relu_h is None or plan.S > 1 else relu_h
    if plan.sep:
        z = _first_half(plan.sep, r, plan, d=1)
        a = F.relu(batch_norm_concat(z, [op[2] for op in plan.sep_branches()]))
        w2, pad = L.crop(_kernels(plan.sep, 4), a.shape[2], a.shape[3])
        y = conv2d(a, w2, 1, pad, a.shape[1])
        pre.append(_pointwise(y, [op[5].weight for op in plan.sep_branches()]))
    if plan.dil:
        pre.append(_first_half(plan.dil, r, plan, d=2))
    if plan.fr is not None:
        pre.append(_factorized_reduce(plan, r, cl))
    Ho, Wo = (h.shape[2] - 1) // plan.stride + 1, (h.shape[3] - 1) // plan.stride + 1
    mix, w_id = _mixing_matrix(plan, weights, h, cl)
    out, J = None if acc is None else acc.data, len(plan.rows)
    dtype = (mix if mix is not None else w_id).dtype  # of the α-weighted sum (fp32 for α)
    dev = h.device.type
    if J:
        blocks = [L.rows(t, C, cl) for t in pre]
        blocks += [L.rows(kind.mods[0][0][0](h), C, cl) for kind in plan.pools]
        Z = torch.cat(blocks, 2 if cl else 1) if len(blocks) > 1 else blocks[0].contiguous()
        # BatchNorm on a view whose channel axis is every (channel, row) pair: [N, C·J]
        # (channels_last: rows innermost) or [B, J·C, H·W]
        zv = Z.view(Z.shape[0], -1) if cl else Z.view(B, J * C, -1)
        Z = (
            batch_norm_concat(zv, plan.final_bns(), interleaved=cl).view(-1, J)
            if cl
            else (batch_norm_concat(zv, plan.final_bns()).view(B, J, -1))
        )
        with torch.autocast(dev, enabled=False):  # the contraction runs in the weights' dtype
            out = _contract(out, Z.to(dtype), mix, cl)
    if w_id is not None:  # identity: + Σ_s w_id[s]·h_s (h is never copied into Z)
        with torch.autocast(dev, enabled=False):
            if cl:  # outer products: elementwise beats a K=1 matmul
                for s, hs_ in enumerate(hs):
                    col = hs_.permute(0, 2, 3, 1).reshape(-1, 1).to(dtype)
                    out = col * w_id[s] if out is None else torch.addcmul(out, col, w_id[s])
            else:
                out = _contract(out, h.reshape(B, plan.S, -1).to(dtype), w_id, cl)
    return Packed(out, (B, C, Ho, Wo), cl)


def _contract(acc: Tensor | None, Z: Tensor, mix: Tensor, cl: bool) -> Tensor:
    """``acc + Z @ mix`` (channels_last: ``Z [N·C, J]``, ``mix [J, E]``) or, NCHW,
    ``acc + mix @ Z`` per image (``mix [E, J]``, ``Z [B, J, C·H·W]``)."""
    if cl:
        return torch.mm(Z, mix) if acc is None else torch.addmm(acc, Z, mix)
    m = mix.expand(Z.shape[0], *mix.shape)
    return torch.bmm(m, Z) if acc is None else torch.baddbmm(acc, m, Z)


def _kernels(kinds: list[Kind], layer: int) -> Tensor:
    """Layer ``layer``'s depthwise kernels of every branch, ``[M·C, 1, K, K]``."""
    return L.kernels([(k.k, [op[layer].weight for op in k.branches()]) for k in kinds])


def _first_half(kinds: list[Kind], r: Tensor, plan: Plan, d: int) -> Tensor:
    """First depthwise conv (all branches read ``r``) + grouped pointwise: branch-major."""
    s = plan.stride
    if d == 2 and s == 2:  # a dilation-2 conv at stride 2 reads the even positions only
        r, d, s = r[:, :, ::2, ::2], 1, 1
    w, pad = L.crop(_kernels(kinds, 0), r.shape[2], r.shape[3], d)
    x = depthwise_repeated(r, w, s, pad, d)
    return _pointwise(x, [op[1].weight for kind in kinds for op in kind.branches()])


def _pointwise(x: Tensor, ws: list[Tensor]) -> Tensor:
    """The branches' 1×1 convs (each ``C → C``) as one grouped conv."""
    return conv2d(x, L.cat_params(ws), 1, (0, 0), len(ws))


def _factorized_reduce(plan: Plan, r: Tensor, cl: bool) -> Tensor:
    """Every edge's FactorizedReduce before its BN, branch-major ``[B, E·S·C, H', W']``."""
    ops, S = plan.fr.branches(), plan.S
    odd = F.pad(r, (0, 1, 0, 1))[:, :, 1::2, 1::2]
    half = ops[0].conv_1.out_channels
    w1, w2 = (
        L.block_diagonal(L.cat_params([getattr(op, n).weight for op in ops]), S, half)
        for n in ("conv_1", "conv_2")
    )
    y1, y2 = F.conv2d(r[:, :, ::2, ::2], w1), F.conv2d(odd, w2)
    B, _, Ho, Wo = y1.shape
    if cl:  # b h w branch (conv_1 | conv_2) c
        v = [y.permute(0, 2, 3, 1).unflatten(3, (-1, half)) for y in (y1, y2)]
        return torch.stack(v, 4).view(B, Ho, Wo, -1).permute(0, 3, 1, 2)
    v = [y.unflatten(1, (-1, half)) for y in (y1, y2)]
    return torch.stack(v, 2).view(B, -1, Ho, Wo)


def _mixing_matrix(plan: Plan, weights, like: Tensor, cl: bool):
    """The mixing matrix (row j's op weight on edge e, 0 for another edge's row), ``[J, E]``
    (channels_last) or ``[E, J]``, and the identity's weights, ``[S, 1, E]`` or ``[E, S]``
    (``None`` without rows / identity). ``weights[s][e][k]``."""
    S, E, rows, ident = plan.S, plan.E, plan.rows, plan.identity
    if torch.is_tensor(weights):
        idx, mask, idx_id = _gather(tuple(rows), ident, S, E, weights.shape[-1], weights.device)
        flat = weights.reshape(-1)  # α's dtype is kept (fp32 under autocast)
        mix = flat[idx] * mask.to(weights.dtype) if rows else None
        w_id = flat[idx_id] if ident is not None else None
    else:
        dev = like.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else like.dtype

        def tensor(vals):
            return torch.tensor(vals, dtype=dtype, device=like.device)

        vals = [
            [float(weights[s][e][k]) if o in (None, e) else 0.0 for e in range(E)]
            for k, o, s in rows
        ]
        mix = tensor(vals) if rows else None
        w_id = None
        if ident is not None:
            w_id = tensor([[[float(weights[s][e][ident]) for e in range(E)]] for s in range(S)])
    if not cl:
        mix = None if mix is None else mix.t()
        w_id = None if w_id is None else w_id.view(S, E).t()
    return mix, w_id


@functools.lru_cache(maxsize=256)
def _gather(rows, ident, S: int, E: int, n: int, device: torch.device):
    """Flat indices into ``weights [S, E, n]`` of the mixing matrix ``[J, E]`` and of the
    identity's ``[S, 1, E]``, and the edge mask."""
    idx = [[(s * E + e) * n + k for e in range(E)] for k, _, s in rows]
    mask = [[float(o in (None, e)) for e in range(E)] for _, o, _ in rows]
    idx_id = [[[(s * E + e) * n + (ident or 0) for e in range(E)]] for s in range(S)]
    return (
        torch.tensor(idx, device=device).view(len(rows), E),
        torch.tensor(mask, device=device).view(len(rows), E),
        torch.tensor(idx_id, device=device),
    )
