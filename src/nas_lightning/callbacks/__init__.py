"""Callbacks that read the algorithm's ``export()`` / ``export_probs()`` (any space)."""

from nas_lightning.callbacks.diagnostics import CollapseDiagnostics, count_flips
from nas_lightning.callbacks.divergence import DivergenceError, DivergenceGuard
from nas_lightning.callbacks.genotype_writer import GenotypeWriter
from nas_lightning.callbacks.heatmap import AlphaHeatmap, probs_figure
from nas_lightning.callbacks.hessian_eig import HessianEigenvalue

__all__ = [
    "AlphaHeatmap",
    "CollapseDiagnostics",
    "DivergenceError",
    "DivergenceGuard",
    "GenotypeWriter",
    "HessianEigenvalue",
    "count_flips",
    "probs_figure",
]
