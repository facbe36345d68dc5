"""Data-parallel search (Lightning's DDP strategies) without a home-made engine.

Lightning's DDP wrapper all-reduces the weight gradients of ``manual_backward``. The
architecture parameters are another matter: their gradients are computed by
``torch.autograd.grad`` and assigned, which DDP never sees, so they are excluded from DDP's
buckets and averaged here in one collective; the α optimiser then takes the same step on every
rank. The second-order virtual step averages ``∇w L_train`` and ``∇w' L_val`` across ranks, so
every rank builds the same ``w'`` and the same Hessian direction; each rank's ``H u`` on its own
batch shard is then averaged with the α gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_mean(tensors: Sequence[Tensor | None]) -> list[Tensor | None]:
    """The mean over ranks of each tensor (``None`` stays ``None``), in one all-reduce."""
    if world_size() == 1:
        return list(tensors)
    present = [t for t in tensors if t is not None]
    if not present:
        return list(tensors)
    # at least fp32 (16-bit gradients are summed in fp32), never below the widest input: fp64
    # gradients are not rounded to fp32
    dtype = torch.float32
    for t in present:
        dtype = torch.promote_types(dtype, t.dtype)
    flat = torch.cat([t.reshape(-1).to(dtype) for t in present])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    out, offset = [], 0
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        out.append(flat[offset : offset + t.numel()].view_as(t).to(t.dtype))
        offset += t.numel()
    return out


def exclude_from_ddp(module: nn.Module, params: Sequence[nn.Parameter]) -> None:
    """Tell ``DistributedDataParallel`` (when it wraps ``module`` later) to leave ``params``
    alone: their gradients are assigned, not back-propagated, and reduced by hand."""
    ids = {id(p) for p in params}
    names = [n for n, p in module.named_parameters() if id(p) in ids]
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, names)


__all__ = ["all_reduce_mean", "exclude_from_ddp", "world_size"]
