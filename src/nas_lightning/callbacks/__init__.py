"""Callbacks that read the algorithm's ``export()`` / ``export_probs()`` (any space)."""

from nas_lightning.callbacks.divergence import DivergenceError, DivergenceGuard
from nas_lightning.callbacks.genotype_writer import GenotypeWriter
from nas_lightning.callbacks.heatmap import AlphaHeatmap, probs_figure

__all__ = ["AlphaHeatmap", "DivergenceError", "DivergenceGuard", "GenotypeWriter", "probs_figure"]
