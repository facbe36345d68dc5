"""Derived (evaluation) networks built from genotypes, and their size counters."""

from nas_lightning.models.build import build_network, build_proxyless_network
from nas_lightning.models.counting import count_macs, count_params
from nas_lightning.models.darts_net import AuxiliaryHead, DartsNetwork, EvalCell, drop_path

__all__ = [
    "AuxiliaryHead",
    "DartsNetwork",
    "EvalCell",
    "build_network",
    "build_proxyless_network",
    "count_macs",
    "count_params",
    "drop_path",
]
