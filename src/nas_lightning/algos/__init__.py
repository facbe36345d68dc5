"""Search algorithms as LightningModules (manual optimisation, one bilevel base)."""

from nas_lightning.algos.base import BilevelSearch
from nas_lightning.algos.darts import DartsSearch

__all__ = ["BilevelSearch", "DartsSearch"]
