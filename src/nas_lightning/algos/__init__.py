"""Search algorithms as LightningModules (manual optimisation, one bilevel base)."""

from nas_lightning.algos.base import BilevelSearch
from nas_lightning.algos.darts import DartsSearch
from nas_lightning.algos.gdas import GdasSearch
from nas_lightning.algos.pcdarts import PcDartsSearch
from nas_lightning.algos.proxyless import ProxylessSearch

__all__ = ["BilevelSearch", "DartsSearch", "GdasSearch", "PcDartsSearch", "ProxylessSearch"]
