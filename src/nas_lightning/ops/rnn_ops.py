"""The DARTS recurrent-cell candidate ops (Liu et al. 2019, §2.1 and the quark0/darts rnn code).

An edge ``s_j → node`` of the recurrent cell projects its source state to a gate and a
candidate, ``(c, h) = split(W s_j)``, and mixes them with the highway bypass
``s = s_j + σ(c)·(f(h) − s_j)``; the candidate ops are the activations ``f`` (tanh, relu,
sigmoid, identity) or ``none``. The projection belongs to the cell (one matmul per node, as in
the DARTS code), so an op here is weightless: it reads a *packed* edge input ``x`` of shape
``[..., 3, batch, nhid]`` holding ``(s_j, σ(c), h)`` and returns ``torch.lerp(s_j, f(h), σ(c))``
(the highway in one fused kernel; leading dims: several edges at once). Registered with the
role ``rnn``; ``none`` is shared with the cell ops (registered in :mod:`.darts_ops`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from nas_lightning.ops.desc import OpDesc
from nas_lightning.ops.registry import (
    ALIASES,
    ZERO,
    available_ops,
    canonical_name,
    describe,
    op_spec,
    register_op,
)

ROLE = "rnn"
RNN_OPS = ["none", "tanh", "relu", "sigmoid", "identity"]


def _identity(h: Tensor) -> Tensor:
    return h


class Highway(nn.Module):
    """``s + c·(f(h) − s)`` on a packed input ``x = stack([s, c, h], -3)`` (``c`` gated)."""

    def __init__(self, name: str, act: Callable[[Tensor], Tensor]):
        super().__init__()
        self.name, self.act = name, act
        self.expects_preact = False
        self.shareable = False  # each edge reads its own projection

    def forward(self, x: Tensor) -> Tensor:
        s, c, h = x.unbind(-3)
        return torch.lerp(s, self.act(h), c)

    def extra_repr(self) -> str:
        return self.name


def _register(name: str, act: Callable[[Tensor], Tensor]) -> None:
    @register_op(name, roles=[ROLE])
    def _build(d: OpDesc, affine: bool, preact: bool) -> nn.Module:
        return Highway(name, act)


_register("tanh", torch.tanh)
_register("relu", torch.relu)
_register("sigmoid", torch.sigmoid)
_register("identity", _identity)


def validate_rnn_ops(names: Iterable[str]) -> list[str]:
    """Canonicalise a recurrent op list (``zero`` → ``none``): non-empty, no duplicates, at
    least one op besides ``none``."""
    out = [canonical_name(ALIASES.get(str(n), str(n)), role=ROLE) for n in names]
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate ops in the recurrent op list {out}")
    if not [n for n in out if n != ZERO]:
        raise ValueError(
            f"recurrent op list {out} has no op besides {ZERO!r}; choose from: "
            + ", ".join(available_ops(ROLE))
        )
    return out


def build_rnn_op(name: str, nhid: int) -> nn.Module:
    """The weightless module of recurrent op ``name`` (hidden width ``nhid``: one 'pixel')."""
    spec = op_spec(canonical_name(name, role=ROLE))
    return spec.build(describe(spec.name, nhid, nhid, (1, 1)), False, False)


__all__ = ["RNN_OPS", "ROLE", "Highway", "build_rnn_op", "validate_rnn_ops"]
