"""Count the aten operators a piece of code dispatches (a proxy for kernel launches).

A ``TorchDispatchMode`` sees every aten call that reaches the backends, after autograd and
after the composite (decomposed) ops have been expanded: the forward ops, the backward ops the
autograd engine runs (including double backward and the optimisers' steps), view ops
included. The mode's handler runs the op with the mode switched off, so the calls a kernel
makes internally are not counted: one count is one dispatch from Python or from autograd, i.e.
roughly one kernel launch chain on a GPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode


class AtenCounter(TorchDispatchMode):
    """``with AtenCounter() as c: step()`` then ``c.total`` and ``c.counts`` (per overload)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.counts[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def count_aten(fn: Callable[[], Any]) -> AtenCounter:
    """Run ``fn`` once under an :class:`AtenCounter` and return the counter."""
    with AtenCounter() as counter:
        fn()
    return counter


def count_step(step: Callable[[], Any], policies: dict[str, Callable[[], Any]]) -> dict[str, int]:
    """The aten calls of one (already warmed-up) step under each context-manager factory of
    ``policies`` (``{"aten_ops": contextlib.nullcontext}`` for the step as it is); a step under
    another policy is first run once uncounted, so one-time setup is not counted."""
    out = {}
    for key, policy in policies.items():
        with policy():
            if policy is not nullcontext:
                step()
            out[key] = count_aten(step).total
    return out
