"""The interface every search space (supernet) offers to algorithms and callbacks.

A space declares keyed choice points (:mod:`.choices`) and holds only weights: the search
algorithm's mixing strategy owns α, binds itself to the choice points and decides how candidates
mix. What the space still knows is its own discrete structure: how to turn per-decision
probabilities into a genotype (:meth:`derive`), how to label them for heatmaps, and which ops a
latency model must price.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from nas_lightning.spaces.choices import (
    Decision,
    InputChoice,
    OpChoice,
    bound,
    input_choices,
    op_choices,
)
from nas_lightning.spaces.plans import FixedPlans

Probs = Mapping[str, Tensor]  # decision key -> probabilities over its candidates


class SearchSpace(nn.Module, ABC):
    """A supernet of choice points; every parameter it holds is a weight (α lives elsewhere)."""

    num_classes: int
    config: dict[str, Any]  # the constructor arguments (JSON-friendly): rebuilds the space
    #: ``"cell"``: choice points are DARTS edges feeding nodes; ``"block"``: a chain of blocks
    kind: str = "cell"

    def space_config(self) -> dict[str, Any]:
        """``{"_target_": class path, **constructor arguments}``: see :func:`space_from_config`."""
        cls = type(self)
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **copy.deepcopy(self.config)}

    # ------------------------------------------------------------------ choice points
    def choice_points(self) -> list[OpChoice]:
        return list(op_choices(self))

    def decisions(self) -> list[Decision]:
        """One :class:`Decision` per distinct key, in order of first appearance."""
        out: dict[str, Decision] = {}
        for cp in self.choice_points():
            d = cp.decision()
            if d.key in out and out[d.key] != d:
                raise ValueError(f"choice points sharing key {d.key!r} differ: {out[d.key]}, {d}")
            out.setdefault(d.key, d)
        return list(out.values())

    def node_choices(self) -> list[InputChoice]:
        """One :class:`InputChoice` per distinct key (nodes of the first cell of each type)."""
        seen: dict[str, InputChoice] = {}
        for ic in input_choices(self):
            seen.setdefault(ic.key, ic)
        return list(seen.values())

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def named_weight_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return list(self.named_parameters())

    # ------------------------------------------------------------------ discrete architecture
    @abstractmethod
    def derive(self, probs: Probs, input_weights: Probs | None = None) -> Any:
        """The genotype for per-decision probabilities (``input_weights``: per node key, a
        weight per incoming edge, e.g. PC-DARTS's softmax(β); ``None``: all 1)."""

    def sample_choice(self, generator: torch.Generator | None = None) -> list[int]:
        """A uniformly random candidate index per decision (in :meth:`decisions` order)."""
        return [
            int(torch.randint(len(d.op_names), (1,), generator=generator)) for d in self.decisions()
        ]

    def single_path(self, choice: Sequence[int]) -> nn.Module:
        """A network running candidate ``choice[i]`` at every choice point of decision ``i``
        (shares this space's weights; spaces with a compact derived network override it)."""
        return FixedPath(self, choice)

    def export_probs(self, probs: Probs) -> dict[str, dict[str, dict[str, float]]]:
        """``{group: {row_label: {op: probability}}}`` (one heatmap per group); columns are the
        union of the group's op names, a candidate a row lacks shows 0."""
        tables: dict[str, dict[str, dict[str, float]]] = {}
        cols: dict[str, list[str]] = {}
        for d in self.decisions():
            names = cols.setdefault(d.group, [])
            names += [n for n in d.op_names if n not in names]
        for d in self.decisions():
            p = dict(zip(d.op_names, probs[d.key].detach().float().tolist(), strict=True))
            zero_last = sorted(cols[d.group], key=lambda n: n == "zero")
            tables.setdefault(d.group, {})[d.label] = {c: p.get(c, 0.0) for c in zero_last}
        return tables

    # ------------------------------------------------------------------ latency interface
    def latency_specs(self) -> dict[str, list[list[Any]]]:
        """Per decision key, per choice point with that key, the ``OpDesc`` of every candidate
        (in α order); empty where the space gives no op descriptions."""
        out: dict[str, list[list[Any]]] = {}
        for cp in self.choice_points():
            if cp.descs is None:
                raise ValueError(
                    f"space {type(self).__name__} gives no op descriptions for {cp.key!r}: "
                    "it cannot be priced by a latency model"
                )
            out.setdefault(cp.key, []).append(list(cp.descs))
        return out

    def fixed_specs(self) -> list[Any]:
        """``OpDesc`` of the ops outside every choice point (stem, head, ...)."""
        return []


class FixedPath(nn.Module):
    """A space run with a fixed candidate per decision (profiling an architecture end to end)."""

    def __init__(self, space: SearchSpace, choice: Sequence[int]):
        super().__init__()
        decisions = space.decisions()
        if len(choice) != len(decisions):
            raise ValueError(f"{len(choice)} choices for {len(decisions)} decisions")
        self.space = space
        self.plans = FixedPlans({d.key: int(c) for d, c in zip(decisions, choice, strict=True)})

    def forward(self, x: Tensor) -> Tensor:
        # ``space.forward``, not ``space(x)``: the installed strategy's hook must not plan
        # (nor draw random samples) for a forward that runs fixed paths.
        with bound(self.space, self.plans):
            return self.space.forward(x)


def space_from_config(config: Mapping[str, Any]) -> SearchSpace:
    """Rebuild a space from :meth:`SearchSpace.space_config` (checkpoints, genotypes)."""
    import importlib

    target = str(config.get("_target_", ""))
    module_name, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, SearchSpace)):
        raise ValueError(f"space config names {target!r}, which is not a SearchSpace class")
    return cls(**{k: v for k, v in config.items() if k != "_target_"})


def entropy(probs: Probs) -> Tensor:
    """Mean entropy over all decisions (zero-probability entries contribute 0)."""
    ent = [-(p * torch.log(p.clamp_min(1e-30))).sum() for p in probs.values()]
    return torch.stack(ent).mean()


__all__ = ["FixedPath", "Probs", "SearchSpace", "entropy", "space_from_config"]
