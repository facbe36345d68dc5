"""Mixing strategies: an algorithm's way of running a space's choice points, and the owner of α.

:meth:`MixingStrategy.install` reads a space's decisions, creates α (one matrix per decision
group, one row per key: every normal cell of a DARTS network shares its group's rows), binds
itself to every choice point and hooks the space's forward: at the start of each forward it
builds one *plan* per decision (:mod:`nas_lightning.spaces.plans`), which the choice points
then execute. Subclasses override :meth:`make_plans` (and, for node weighting or partial
channels, :meth:`aggregate` / :meth:`mix_group`). The base plan is the DARTS softmax mix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas_lightning.spaces.base import Probs, SearchSpace, entropy
from nas_lightning.spaces.choices import ChoiceGroup, Decision, InputChoice, OpChoice, bind
from nas_lightning.spaces.plans import Plan, execute, execute_group, fused_sum, sum_present


class _Hooks:
    """The forward hooks a strategy registered on a space (removed on re-installation)."""

    def __init__(self, handles):
        self.handles = handles

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


class MixingStrategy(nn.Module):
    """Owns α and decides, per forward, how every choice point mixes its candidates."""

    #: spaces this strategy cannot run on, with the one-line reason (``space.kind`` → reason)
    unsupported: dict[str, str] = {}
    title = "softmax mixing (DARTS)"

    def __init__(self, init_std: float = 1e-3):
        super().__init__()
        self.init_std = init_std
        self.alpha = nn.ParameterDict()
        self.rows: dict[str, tuple[str, int, int]] = {}  # key -> (group, row, width)
        self.decisions: list[Decision] = []
        self.nodes: list[InputChoice] = []
        self._plans: dict[str, Plan] | None = None
        self._override: dict[str, Plan] | None = None
        #: fused mixed ops: ``None`` where they pay (accelerators; small maps on CPU), or always
        #: (``True``) / never (``False``); the same function either way
        self.fused: bool | None = None

    # ------------------------------------------------------------------ installation
    def install(self, space: SearchSpace) -> None:
        reason = self.unsupported.get(getattr(space, "kind", ""))
        if reason:
            raise ValueError(f"{self.title} cannot search {type(space).__name__}: {reason}")
        self.decisions = space.decisions()
        if not self.decisions:
            raise ValueError(f"space {type(space).__name__} declares no choice points")
        self.nodes = space.node_choices()
        self.alpha = self._matrices(self.decisions, self.rows, "alpha")
        bind(space, self)
        old = getattr(space, "_mixing_hook", None)
        if old is not None:  # re-installation: the previous strategy stops planning
            old.remove()
        hooks = (  # bound methods, not lambdas: the module must pickle (ddp_spawn)
            space.register_forward_pre_hook(self._pre_forward_hook),
            space.register_forward_hook(self._post_forward_hook),
        )
        object.__setattr__(space, "_mixing_hook", _Hooks(hooks))

    def _matrices(self, decisions, rows: dict, prefix: str) -> nn.ParameterDict:
        """One parameter per group, rows padded to the widest decision (padding masked)."""
        groups: dict[str, list[Decision]] = {}
        for d in decisions:
            groups.setdefault(d.group, []).append(d)
        params = nn.ParameterDict()
        for g, ds in groups.items():
            width = max(len(d.op_names) for d in ds)
            value = self.init_std * torch.randn(len(ds), width) if self.init_std else None
            params[g] = nn.Parameter(torch.zeros(len(ds), width) if value is None else value)
            mask = torch.tensor([[c < len(d.op_names) for c in range(width)] for d in ds])
            if not mask.all():
                self.register_buffer(f"{prefix}_mask_{g}", mask, persistent=False)
            for r, d in enumerate(ds):
                rows[d.key] = (g, r, len(d.op_names))
        return params

    def logits(self, group: str, params: nn.ParameterDict | None = None, prefix: str = "alpha"):
        """The group's α matrix with padding at -inf (softmax gives it probability 0)."""
        a = (self.alpha if params is None else params)[group]
        mask = getattr(self, f"{prefix}_mask_{group}", None)
        return a if mask is None else a.masked_fill(~mask, float("-inf"))

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    # ------------------------------------------------------------------ probabilities
    def group_probs(self) -> dict[str, Tensor]:
        return {g: F.softmax(self.logits(g).detach(), -1) for g in self.alpha}

    def rows_of(self, matrices: dict[str, Any]) -> dict[str, Any]:
        """Per decision key, its row of per-group matrices (trimmed to the decision's width)."""
        out = {}
        for key, (g, r, w) in self.rows.items():
            row = matrices[g][r]
            out[key] = row if isinstance(row, int) or len(row) == w else row[:w]
        return out

    def probs(self) -> Probs:
        """softmax(α) per decision key (detached): what derivation and heatmaps read."""
        return self.rows_of(self.group_probs())

    def input_weights(self) -> Probs | None:
        """Per node key, a weight per incoming edge for derivation (``None``: unweighted)."""
        return None

    def entropy(self) -> Tensor:
        return entropy(self.probs())

    # ------------------------------------------------------------------ forward
    def begin_forward(self, training: bool) -> None:
        self._plans = self._override if self._override is not None else self.make_plans(training)

    def _pre_forward_hook(self, module: nn.Module, args: Any) -> None:
        self.begin_forward(module.training)

    def _post_forward_hook(self, module: nn.Module, args: Any, out: Any) -> None:
        self.end_forward()

    def end_forward(self) -> None:
        """Drop the plans: they may hold α's graph, and no choice point runs after the forward."""
        self._plans = None

    def alpha_needs_grad(self) -> bool:
        return torch.is_grad_enabled() and any(a.requires_grad for a in self.alpha.values())

    def make_plans(self, training: bool) -> dict[str, Plan]:
        """softmax(α) per key: differentiable when α needs a gradient, else plain floats."""
        if self.alpha_needs_grad():
            return self.rows_of({g: F.softmax(self.logits(g), -1) for g in self.alpha})
        return self.rows_of({g: p.tolist() for g, p in self.group_probs().items()})

    @contextmanager
    def using(self, plans: dict[str, Plan]) -> Iterator[None]:
        """Run forwards under explicit plans (e.g. sampled gates) instead of :meth:`make_plans`."""
        missing = sorted(set(self.rows) - set(plans))
        if missing:
            raise ValueError(f"plans missing for decisions {missing[:5]}")
        old, self._override = self._override, plans
        try:
            yield
        finally:
            self._override = old

    def plan(self, key: str) -> Plan:
        if self._plans is None:
            raise RuntimeError("a choice point ran outside its space's forward (no plan yet)")
        return self._plans[key]

    def mix(self, cp: OpChoice, x: Tensor) -> Tensor | None:
        return execute(cp, self.plan(cp.key), x, {})

    def mix_group(self, group: ChoiceGroup, x: Tensor) -> list[Tensor | None]:
        """All points of ``group`` at once: a mix runs as fused kernels where ``self.fused``
        allows (``None``: where they pay on the device, see ``ops/mixed_edges.fuse_on``)."""
        plans = [self.plan(cp.key) for cp in group.points]
        return execute_group(group, plans, x, self.fused)

    def mix_groups(self, groups, xs: list[Tensor]) -> list[list[Tensor | None]]:
        """Groups feeding the same nodes (``choices.mix_groups``): one fused call for all when
        the nodes sum plainly (this class's :meth:`aggregate` and :meth:`mix_group`)."""
        cls = type(self)
        if cls.aggregate is MixingStrategy.aggregate and cls.mix_group is MixingStrategy.mix_group:
            plans = [[self.plan(cp.key) for cp in g.points] for g in groups]
            outs = fused_sum(groups, plans, xs, self.fused)
            if outs is not None:
                return [outs] + [[None] * len(g.points) for g in groups[1:]]
        return [self.mix_group(g, x) for g, x in zip(groups, xs, strict=True)]

    def aggregate(self, node: InputChoice, inputs: list[Tensor | None]) -> Tensor | None:
        return sum_present(inputs)


__all__ = ["MixingStrategy"]
