"""One ``F.batch_norm`` over the concatenated channels of several BatchNorm modules.

BatchNorm is per channel, so normalising ``cat(x_1, …, x_n)`` with the concatenated running
statistics (and affine parameters) is exactly normalising each ``x_i`` with its own module. The
updated statistics are written back to every module's buffers in one ``_foreach_copy_``, so
``state_dict`` and the modules are those of the unfused ops. Each module's flags are honoured as
``nn.BatchNorm2d.forward`` does: in training with ``track_running_stats=False`` (the α-steps'
frozen statistics) no running buffers are passed and no batch is counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm


def _flags(bn: _BatchNorm) -> tuple:
    return (
        type(bn),
        bn.training,
        bn.track_running_stats,
        bn.running_mean is None,
        bn.affine,
        bn.momentum,
        bn.eps,
    )


def can_fuse(bns: Sequence[_BatchNorm]) -> bool:
    """Whether the modules share every flag one ``F.batch_norm`` call needs to be uniform."""
    if not bns or not all(isinstance(bn, _BatchNorm) for bn in bns):
        return False
    first = _flags(bns[0])
    if any(_flags(bn) != first for bn in bns):
        return False
    if bns[0].momentum is None and bns[0].training and bns[0].track_running_stats:
        # cumulative averages need one count; modules updated together always share it
        counts = {int(bn.num_batches_tracked) for bn in bns}
        return len(counts) == 1
    return True


def batch_norm_concat(x: Tensor, bns: Sequence[_BatchNorm], interleaved: bool = False) -> Tensor:
    """``cat([bn_i(x_i)])`` for ``x = cat(x_i)`` along channels (modules checked by can_fuse).

    ``interleaved``: ``x``'s channels are ordered ``(c, i)`` (channel ``c`` of every module,
    then the next channel) instead of ``(i, c)``; all modules then have the same width.
    """
    ref, n = bns[0], len(bns)
    update = ref.training and ref.track_running_stats
    factor = 0.0 if ref.momentum is None else ref.momentum
    if update and ref.num_batches_tracked is not None:
        torch._foreach_add_([bn.num_batches_tracked for bn in bns], 1)
        if ref.momentum is None:
            factor = 1.0 / float(ref.num_batches_tracked)
    mean = var = stats = None
    if ref.running_mean is not None and (not ref.training or ref.track_running_stats):
        stats = torch.cat([bn.running_mean for bn in bns] + [bn.running_var for bn in bns])
        if interleaved:
            stats = stats.view(2, n, -1).transpose(1, 2).reshape(2, -1)
        mean, var = stats.view(2, -1).unbind(0)
    weight = bias = None
    if ref.affine:
        weight, bias = (
            _cat([getattr(bn, a) for bn in bns], interleaved) for a in ("weight", "bias")
        )
    training = ref.training or ref.running_mean is None
    out = _batch_norm(x, mean, var, weight, bias, training, factor, ref.eps)
    if update and stats is not None:
        with torch.no_grad():
            buffers = [bn.running_mean for bn in bns] + [bn.running_var for bn in bns]
            if interleaved:  # strided per-module views of the updated (c, i) statistics
                src = [t for half in stats.view(2, -1, n).unbind(0) for t in half.unbind(1)]
            else:
                src = stats.view(-1).split([b.numel() for b in buffers])
            torch._foreach_copy_(buffers, src)
    return out


def _cat(tensors: Sequence[Tensor], interleaved: bool) -> Tensor:
    return torch.stack(list(tensors), 1).view(-1) if interleaved else torch.cat(list(tensors))


def _batch_norm(x, mean, var, weight, bias, training: bool, momentum: float, eps: float):
    """``F.batch_norm``. Under forward-mode AD with batch statistics, run inside
    ``algos.dual_forward.dual_forward()`` (as the exact HVP does): torch's own tangent formula
    is not reverse-differentiable through the statistics, the dual forward's is (and lean)."""
    return F.batch_norm(x, mean, var, weight, bias, training, momentum, eps)
