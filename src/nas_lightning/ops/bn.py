"""BatchNorm helpers shared by the α-steps of every search algorithm."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@contextmanager
def running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """Forwards inside this block leave every BatchNorm's running statistics untouched.

    An α-step's forwards (on the val batch, at shifted or virtual weights) must not move
    ``running_mean``/``running_var``/``num_batches_tracked``: only the w-step's train batch
    should. ``_BatchNorm.forward`` in train mode with ``track_running_stats=False`` still
    normalises by the batch statistics (so the α-gradient is the one of the train-mode network)
    but passes ``None`` running buffers to ``F.batch_norm`` and skips the ``num_batches_tracked``
    increment; in eval mode it uses the running buffers exactly as before. This costs one flag
    flip per BatchNorm, where cloning every buffer costs a copy of each.

    Code that calls ``F.batch_norm`` itself with a module's buffers (e.g. a fused mixed op)
    must honour ``bn.track_running_stats`` the same way: in training, pass ``None`` running
    buffers (and do not count the batch) when it is ``False``.
    """
    bns = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True
