"""Per-epoch collapse diagnostics: skip connections, α entropy, genotype flips.

DARTS collapses towards parameter-free ops (skip connections) while α's entropy stays high and
the derived genotype keeps changing; these cheap scalars show it per epoch. Every search
algorithm logs ``arch/entropy`` and its own ``diagnostics()`` (DARTS: ``arch/skip_count``)
itself, so the default config switches those two off here; for a module that does not, this
callback logs them (``diagnostics()`` when offered, else the generic skip-connection count).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import lightning.pytorch as pl

Decisions = list[tuple[Hashable, ...]]


def decisions(genotype: Any) -> Decisions:
    """One tuple of choices per decision (a cell node, a block); position = identity."""
    if hasattr(genotype, "decisions"):
        return [tuple(d) for d in genotype.decisions()]
    return [(op,) for op in genotype.ops()]


def count_flips(previous: Sequence[tuple], current: Sequence[tuple]) -> int:
    """How many choices changed: per decision, the choices of one genotype not in the other's."""
    flips = 0
    for i in range(max(len(previous), len(current))):
        a = Counter(previous[i] if i < len(previous) else ())
        b = Counter(current[i] if i < len(current) else ())
        flips += max(sum((a - b).values()), sum((b - a).values()))
    return flips


class CollapseDiagnostics(pl.Callback):
    """Log at each training epoch end ``arch/skip_count`` (or the algorithm's
    ``diagnostics()``), ``arch/entropy`` (mean α entropy) and ``arch/flips`` (choices changed
    since the previous epoch; 0 at the first). ``skip_count`` / ``entropy`` off: for a module
    that logs those keys itself, so no key is logged twice in one epoch."""

    def __init__(self, skip_count: bool = True, entropy: bool = True, flips: bool = True):
        self.skip_count, self.entropy, self.flips = skip_count, entropy, flips
        self._previous: Decisions | None = None

    def metrics(self, pl_module: pl.LightningModule) -> dict[str, float]:
        genotype = pl_module.export()
        out: dict[str, float] = {}
        if self.skip_count and hasattr(pl_module, "diagnostics"):
            out.update({k: float(v) for k, v in pl_module.diagnostics().items()})
        elif self.skip_count:
            out["arch/skip_count"] = float(genotype.ops().count("skip_connect"))
        if self.entropy:
            out["arch/entropy"] = float(pl_module.arch_entropy())
        if self.flips:
            current = decisions(genotype)
            prev = self._previous
            out["arch/flips"] = float(0 if prev is None else count_flips(prev, current))
            self._previous = current
        return out

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for key, value in self.metrics(pl_module).items():
            pl_module.log(key, value)

    def state_dict(self) -> dict[str, Any]:  # a resumed run counts flips from its last epoch
        return {"previous": self._previous}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._previous = state_dict.get("previous")
