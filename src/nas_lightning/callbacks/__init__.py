"""Callbacks that read ``pl_module.space`` through the space interface (any space works)."""

from nas_lightning.callbacks.genotype_writer import GenotypeWriter
from nas_lightning.callbacks.heatmap import AlphaHeatmap, probs_figure

__all__ = ["AlphaHeatmap", "GenotypeWriter", "probs_figure"]
