"""Callbacks that read the algorithm's ``export()`` / ``export_probs()`` (any space), and the
run-level ones that make a resume continue exactly (RNG, config, LR horizon)."""

from nas_lightning.callbacks.diagnostics import CollapseDiagnostics, count_flips
from nas_lightning.callbacks.diagram import CellDiagram
from nas_lightning.callbacks.divergence import DivergenceError, DivergenceGuard
from nas_lightning.callbacks.epoch_summary import EpochSummary
from nas_lightning.callbacks.genotype_writer import GenotypeWriter
from nas_lightning.callbacks.heatmap import AlphaHeatmap, probs_figure
from nas_lightning.callbacks.hessian_eig import HessianEigenvalue
from nas_lightning.callbacks.resume_state import ResumeState
from nas_lightning.callbacks.schedule_horizon import ScheduleHorizon

__all__ = [
    "AlphaHeatmap",
    "CellDiagram",
    "CollapseDiagnostics",
    "DivergenceError",
    "DivergenceGuard",
    "EpochSummary",
    "GenotypeWriter",
    "HessianEigenvalue",
    "ResumeState",
    "ScheduleHorizon",
    "count_flips",
    "probs_figure",
]
