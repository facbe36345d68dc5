"""The stateful-forward protocol: how a recurrent space carries its hidden state between
batches (truncated BPTT) while every algorithm keeps calling ``space(x)``.

A language model reads a token stream window by window; the hidden state at the end of one
window starts the next. The bilevel loop reads several streams at once (the weights' train
stream, the architecture's val stream, the evaluation stream), so the state belongs to the
*stream*, not to the space. The algorithm keeps one :class:`Stream` per data stream and hands
the space its input as :class:`Streamed` ``(tokens, stream)``: the space starts from
``stream.state`` and records its end state, detached, in ``stream.last``. Because the binding
travels with ``x``, everything that calls ``model(x)`` — first-order and unrolled hypergradients
(``functional_call``), GDAS, ProxylessNAS gates — works on recurrent spaces unchanged.

Every forward of one training step starts from the same ``state`` (the α-step's virtual-step
forwards as much as the w-step's); :meth:`Streams.advance` then carries the *last* forward's end
state into the next step: the w-step's on the train stream, the α-step's (at w' for second
order, as in the DARTS rnn code) on the val stream. A space declares the protocol with the
class attribute ``stateful = True`` and accepts plain token tensors too (zero initial state).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from torch import Tensor, nn


class Stream:
    """One data stream's carried hidden state (``None``: start afresh, i.e. zeros)."""

    __slots__ = ("state", "last")

    def __init__(self) -> None:
        self.state: Any = None  # what every forward of the current step starts from
        self.last: Any = None  # the (detached) end state of the latest forward

    def advance(self) -> None:
        """Carry the latest forward's end state into the next step (truncated BPTT)."""
        if self.last is not None:
            self.state, self.last = self.last, None

    def reset(self) -> None:
        self.state = self.last = None


class Streamed(NamedTuple):
    """A stateful space's input: the tokens and the stream whose state they continue."""

    tokens: Tensor
    stream: Stream


def is_stateful(space: nn.Module) -> bool:
    return bool(getattr(space, "stateful", False))


class Streams:
    """The algorithm's streams by name (``train``, ``val``, ``eval``); a no-op for spaces
    without the protocol, whose batches pass through unchanged."""

    def __init__(self, stateful: bool) -> None:
        self.stateful = stateful
        self.streams: dict[str, Stream] = {}

    def bind(self, name: str, batch: Sequence[Any], start: bool = False) -> tuple[Any, Any]:
        """``(x, y)`` with ``x`` bound to stream ``name``; ``start``: a new pass over the data
        begins here, so the stream's state is reset."""
        x, y = batch
        if not self.stateful:
            return x, y
        stream = self.streams.setdefault(name, Stream())
        if start:
            stream.reset()
        return Streamed(x, stream), y

    def advance(self) -> None:
        for stream in self.streams.values():
            stream.advance()

    def state(self, name: str) -> Any:
        """The state the next forward on stream ``name`` starts from."""
        stream = self.streams.get(name)
        return None if stream is None else stream.state


__all__ = ["Stream", "Streamed", "Streams", "is_stateful"]
