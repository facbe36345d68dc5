"""Callbacks that read the algorithm's ``export()`` / ``export_probs()`` (any space)."""

from nas_lightning.callbacks.diagram import CellDiagram
from nas_lightning.callbacks.genotype_writer import GenotypeWriter
from nas_lightning.callbacks.heatmap import AlphaHeatmap, probs_figure

__all__ = ["AlphaHeatmap", "CellDiagram", "GenotypeWriter", "probs_figure"]
