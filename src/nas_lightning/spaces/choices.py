"""Choice points: what a search space declares, and what a search algorithm decides how to mix.

A space builds its supernet from three placeholders and never mixes candidates itself:

- :class:`OpChoice` — one keyed decision among candidate ops reading one input (a DARTS edge, a
  ProxylessNAS block). Choice points sharing a ``key`` share one architecture decision (every
  normal cell of a DARTS network uses the same α row), while each holds its own weights.
- :class:`ChoiceGroup` — the choice points that read the *same* input (a cell's edges leaving one
  hidden state). Weightless candidates (pools, identity) live once in the group, and a strategy
  may evaluate the whole group at once (fused kernels).
- :class:`InputChoice` — a node summing its incoming edges, keeping ``n_chosen`` of them in the
  derived architecture (PC-DARTS weights them by edge normalisation β).

A mixing strategy (``nas_lightning.algos.mixing``) binds itself to every placeholder with
:func:`bind`; calling an unbound placeholder fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ZERO_NAMES = ("none", "zero")
Builder = Callable[[str, int], nn.Module]  # (op name, channels) -> module


@dataclass(frozen=True)
class Decision:
    """One architecture decision: the rows of α a strategy creates (one per key)."""

    key: str
    group: str  # heatmap / α group: "normal", "reduce", "blocks", ...
    label: str  # row label in the heatmap, e.g. "0→2" or "s1b0"
    op_names: tuple[str, ...]


class _Bound(nn.Module):
    """A placeholder that forwards to the strategy bound to it (not a registered submodule)."""

    _strategy: Any = None

    def bind(self, strategy: Any) -> None:
        object.__setattr__(self, "_strategy", strategy)

    @property
    def strategy(self) -> Any:
        if self._strategy is None:
            raise RuntimeError(
                f"{type(self).__name__} {getattr(self, 'key', '')!r} has no mixing strategy: "
                "a search algorithm installs one (e.g. DartsSearch(space, ...))"
            )
        return self._strategy


class OpChoice(_Bound):
    """Candidate ops on one input. ``modules[name]`` are this choice's own (weighted) candidates;
    ``shared`` names candidates owned by the enclosing :class:`ChoiceGroup`; zero ops have none.
    ``builder(name, channels)`` rebuilds a candidate (PC-DARTS runs them on a channel fraction)."""

    def __init__(
        self,
        key: str,
        group: str,
        label: str,
        op_names: Sequence[str],
        modules: Mapping[str, nn.Module],
        shared: Sequence[str] = (),
        builder: Builder | None = None,
        channels: int | None = None,
        stride: int = 1,
    ):
        super().__init__()
        self.key, self.group, self.label = key, group, label
        self.op_names = list(op_names)
        self.ops = nn.ModuleDict(dict(modules))
        self.shared_names = frozenset(shared)
        self.builder, self.channels, self.stride = builder, channels, stride
        self.zero_index = next((k for k, n in enumerate(self.op_names) if n in ZERO_NAMES), None)
        self.descs: list[Any] | None = None  # per-candidate OpDesc (latency), set by the space
        self._owner: ChoiceGroup | None = None
        missing = [
            n
            for n in self.op_names
            if n not in ZERO_NAMES and n not in self.ops and n not in self.shared_names
        ]
        if missing:
            raise ValueError(f"choice {key!r}: no module for candidate(s) {missing}")

    def decision(self) -> Decision:
        return Decision(self.key, self.group, self.label, tuple(self.op_names))

    def __len__(self) -> int:
        return len(self.op_names)

    def run(self, k: int, x: Tensor, cache: dict | None = None) -> Tensor | None:
        """Candidate ``k`` on ``x`` (``None`` for a zero op). ``cache`` shares weightless outputs
        and the pre-activation ReLU among the choice points of one group within one forward."""
        name = self.op_names[k]
        if k == self.zero_index:
            return None
        cache = {} if cache is None else cache
        if name in self.shared_names:
            if name not in cache:
                cache[name] = self._owner.shared[name](x)
            return cache[name]
        op = self.ops[name]
        if getattr(op, "expects_preact", False):
            if "relu" not in cache:
                cache["relu"] = F.relu(x)
            return op(cache["relu"])
        return op(x)

    def zeros(self, x: Tensor) -> Tensor:
        """The output of the zero op: zeros of the output shape (stride-aware)."""
        s = self.stride
        return torch.zeros_like(x if s == 1 else x[:, :, ::s, ::s])

    def rebuild(self, channels: int) -> None:
        """Rebuild the own candidates for ``channels`` channels (needs a ``builder``)."""
        if self.builder is None:
            raise ValueError(f"choice {self.key!r} cannot be rebuilt (its space gave no builder)")
        self.ops = nn.ModuleDict({n: self.builder(n, channels) for n in self.ops})
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor | None:
        return self.strategy.mix(self, x)


class ChoiceGroup(_Bound):
    """Choice points reading the same input, plus the weightless candidates they share."""

    def __init__(self, points: Sequence[OpChoice], shared: Mapping[str, nn.Module] | None = None):
        super().__init__()
        self.points = nn.ModuleList(points)
        self.shared = nn.ModuleDict(dict(shared or {}))
        for p in points:
            object.__setattr__(p, "_owner", self)
            unknown = sorted(p.shared_names - set(self.shared))
            if unknown:
                raise ValueError(f"choice {p.key!r} shares {unknown}, which its group lacks")

    def rebuild(self, channels: int, builder: Builder) -> None:
        self.shared = nn.ModuleDict({n: builder(n, channels) for n in self.shared})
        for p in self.points:
            p.rebuild(channels)

    def forward(self, x: Tensor) -> list[Tensor | None]:
        return self.strategy.mix_group(self, x)


def mix_groups(groups: Sequence[ChoiceGroup], xs: Sequence[Tensor]) -> list[list[Tensor | None]]:
    """Groups whose points feed the same nodes, point ``e`` of each into node ``e`` (a DARTS
    cell's two inputs), each on its input. A strategy whose nodes sum their inputs plainly may
    run them as one fused call (``MixingStrategy.mix_groups``): then group 0's outputs carry
    the sums and the other groups' are ``None``, which the node sum skips."""
    joint = getattr(groups[0].strategy, "mix_groups", None)
    if joint is not None:
        return joint(groups, xs)
    return [g(x) for g, x in zip(groups, xs, strict=True)]


class InputChoice(_Bound):
    """A node summing ``n_inputs`` incoming edges; the derived architecture keeps ``n_chosen``."""

    def __init__(self, key: str, group: str, n_inputs: int, n_chosen: int):
        super().__init__()
        if not 1 <= n_chosen <= n_inputs:
            raise ValueError(f"input choice {key!r}: n_chosen={n_chosen} not in 1..{n_inputs}")
        self.key, self.group, self.n_inputs, self.n_chosen = key, group, n_inputs, n_chosen

    def forward(self, inputs: Sequence[Tensor | None]) -> Tensor | None:
        if len(inputs) != self.n_inputs:
            raise ValueError(f"input choice {self.key!r}: {len(inputs)} inputs, {self.n_inputs}")
        return self.strategy.aggregate(self, list(inputs))


def op_choices(module: nn.Module) -> Iterator[OpChoice]:
    return (m for m in module.modules() if isinstance(m, OpChoice))


def input_choices(module: nn.Module) -> Iterator[InputChoice]:
    return (m for m in module.modules() if isinstance(m, InputChoice))


def bind(module: nn.Module, strategy: Any) -> None:
    """Bind every placeholder in ``module`` to ``strategy``."""
    for m in module.modules():
        if isinstance(m, _Bound):
            m.bind(strategy)


@contextmanager
def bound(module: nn.Module, strategy: Any) -> Iterator[None]:
    """Temporarily bind ``module``'s placeholders to ``strategy`` (restored afterwards)."""
    placeholders = [m for m in module.modules() if isinstance(m, _Bound)]
    previous = [m._strategy for m in placeholders]
    for m in placeholders:
        m.bind(strategy)
    try:
        yield
    finally:
        for m, old in zip(placeholders, previous, strict=True):
            m.bind(old)


__all__ = [
    "ChoiceGroup",
    "Decision",
    "InputChoice",
    "OpChoice",
    "ZERO_NAMES",
    "bind",
    "bound",
    "input_choices",
    "mix_groups",
    "op_choices",
]
