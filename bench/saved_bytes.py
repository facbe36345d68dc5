"""Bytes autograd saves for backward over a step that may build and free several graphs.

A ``saved_tensors_hooks`` pack hook sees every tensor autograd saves. Each distinct storage
(keyed by device and data pointer) is counted once, at its full storage size (a saved view
keeps all of its storage alive), while at least one graph holds a saved tensor on it: the hook
packs a detached alias that only the graph owns, with a ``weakref.finalize`` that releases it
when the graph drops it. So a tensor saved by several ops or through several views counts
once, while an address freed and reused by a later graph of the same step counts again, as it
is new memory. Parameters count too while a graph holds them (they are small next to the
activations, and the reference's second order saves the fresh parameters of its unrolled
copy). Forward AD's efficient zero tensors (tangents known to be zero) have no storage and
count nothing.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

Key = tuple[str, int]


class SavedBytes:
    """Peak live saved bytes per phase (``in_phase``/``wrap``) and the total over the step."""

    def __init__(self) -> None:
        self.phase, self.live_bytes, self.total = "other", 0, 0
        self.refs: dict[Key, list[int]] = {}  # key -> [live saved tensor objects, nbytes]
        self.peaks: dict[str, int] = {}

    @contextmanager
    def in_phase(self, name: str) -> Iterator[None]:
        prev, self.phase = self.phase, name
        try:
            yield
        finally:
            self.phase = prev

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` run inside phase ``name`` (to tag a method without touching its code)."""

        def run(*args: Any, **kwargs: Any) -> Any:
            with self.in_phase(name):
                return fn(*args, **kwargs)

        return run

    @contextmanager
    def hooked(self) -> Iterator[None]:
        """Count what autograd saves inside this block (only here: the hook slows steps)."""
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            yield

    def _pack(self, t: Tensor) -> Tensor:
        if t._is_zerotensor():  # forward AD's memoryless zero tangent: no storage to count
            return t
        storage = t.untyped_storage()
        key = (str(t.device), storage.data_ptr())
        entry = self.refs.get(key)
        if entry is None:
            entry = self.refs[key] = [0, storage.nbytes()]
            self.live_bytes += entry[1]
            self.total += entry[1]
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), self.live_bytes)
        entry[0] += 1
        # Pack a detached alias: the graph alone owns it, so the finalizer fires exactly when
        # the graph drops it; returning ``t`` itself would let a saved output hold its own
        # grad_fn, a C++ reference cycle that leaks the double-backward graph of ``exact``.
        packed = t.detach()
        weakref.finalize(packed, self._release, key)
        return packed

    def _release(self, key: Key) -> None:
        entry = self.refs[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live_bytes -= entry[1]
            del self.refs[key]

    def report(self) -> dict[str, float]:
        """MB (1e6 bytes): ``saved_mb`` is the step's peak (the largest set of graphs alive at
        once), ``saved_{alpha,w}_mb`` the peaks inside each phase, ``saved_total_mb`` the sum of
        every storage each time it became live (all graphs of the step)."""
        mb = 1e-6
        return {
            "saved_mb": max(self.peaks.values(), default=0) * mb,
            "saved_alpha_mb": self.peaks.get("alpha", 0) * mb,
            "saved_w_mb": self.peaks.get("w", 0) * mb,
            "saved_total_mb": self.total * mb,
        }
