"""Retrain a derived network from scratch (``task=retrain``) and export it to ONNX."""

from nas_lightning.retrain.export import export_onnx, missing_export_modules
from nas_lightning.retrain.module import RetrainModule

__all__ = ["RetrainModule", "export_onnx", "missing_export_modules"]
