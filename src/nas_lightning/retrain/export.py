"""ONNX export of a derived network, checked against ONNX Runtime.

Needs the optional extra ``pip install -e ".[export]"`` (onnx, onnxruntime and onnxscript:
torch 2.13's ``torch.onnx.export`` defaults to the ``torch.export``-based exporter, which needs
onnxscript; the TorchScript exporter still works without it but is deprecated).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

EXPORT_MODULES = ("onnx", "onnxruntime", "onnxscript")
INSTALL_HINT = 'pip install -e ".[export]"'


def missing_export_modules() -> list[str]:
    """The modules of the ``export`` extra that are not installed (empty: export works)."""
    return [m for m in EXPORT_MODULES if importlib.util.find_spec(m) is None]


def _export(net: nn.Module, x: torch.Tensor, path: Path) -> np.ndarray:
    """``torch.onnx.export`` quietly; returns torch's logits for ``x``."""
    quiet = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript")]
    levels = [q.level for q in quiet]
    for q in quiet:  # their INFO lines (one per folded initializer) flood the run's log
        q.setLevel(logging.WARNING)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporter deprecation chatter, not this model's
            torch.onnx.export(
                net,
                (x,),
                str(path),
                input_names=["input"],
                output_names=["logits"],
                external_data=False,  # one self-contained file (the weights inside)
                verbose=False,
            )
            return net(x).numpy()
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)


def export_onnx(
    module: nn.Module,
    input_shape: Sequence[int],
    path: str | Path,
    atol: float = 1e-4,
    seed: int = 0,
) -> dict[str, Any]:
    """Write ``module`` (eval mode, CPU, batch ``input_shape[0]``) to ``path`` and check that
    ONNX Runtime reproduces the torch logits within ``atol``; returns the check's numbers."""
    missing = missing_export_modules()
    if missing:
        raise RuntimeError(f"ONNX export needs {', '.join(missing)}: run {INSTALL_HINT}")
    import onnxruntime as ort

    net = copy.deepcopy(module).cpu().eval()
    x = torch.randn(tuple(input_shape), generator=torch.Generator().manual_seed(seed))
    path = Path(path)
    expected = _export(net, x, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    max_diff = float(np.abs(got - expected).max())
    if got.shape != expected.shape or not max_diff <= atol:
        raise RuntimeError(
            f"ONNX Runtime output differs from torch by {max_diff:.3g} (> atol={atol}) for "
            f"{path}; shapes {got.shape} vs {expected.shape}"
        )
    return {"path": str(path), "max_abs_diff": max_diff, "atol": atol, "input_shape": list(x.shape)}
