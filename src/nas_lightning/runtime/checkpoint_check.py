"""Check a checkpoint against the run before training, so a mismatch is one line, not a
1,000-line ``size mismatch`` dump from ``load_state_dict`` in the middle of ``fit``."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nas_lightning.callbacks.resume_state import CONFIG_KEY
from nas_lightning.runtime.errors import RunError
from nas_lightning.runtime.resume import config_diff, describe_diff

SHOWN = 3


class CheckpointError(RunError):
    """A checkpoint that cannot be read or does not fit this run."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint on CPU (tensors and plain data only)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(
            f"ckpt_path={str(p)!r} does not exist; pass a run's checkpoints/last.ckpt, "
            "ckpt_path=last for the newest of this config, or drop ckpt_path"
        )
    fix = "point ckpt_path at a .ckpt written by a search run (<run dir>/checkpoints/last.ckpt)"
    if not zipfile.is_zipfile(p):
        raise CheckpointError(
            f"ckpt_path={str(p)!r} is not a checkpoint (not the zip archive torch.save writes: "
            f"truncated, or another kind of file); {fix}"
        )
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's text advises weights_only=False: unsafe
        raise CheckpointError(
            f"ckpt_path={str(p)!r} holds objects other than tensors and plain data, so it was "
            f"not written by a search run; {fix}"
        ) from err
    except Exception as err:
        reason = " ".join(str(err).split("\n")[0].split())[:120]
        raise CheckpointError(
            f"ckpt_path={str(p)!r} is not a readable checkpoint ({type(err).__name__}: "
            f"{reason}); {fix}"
        ) from err
    if not isinstance(ckpt, dict) or not {"state_dict", "loops"} <= ckpt.keys():
        keys = sorted(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"ckpt_path={str(p)!r} is not a Lightning training checkpoint (it holds {keys}, "
            "no state_dict/loops); point ckpt_path at <run dir>/checkpoints/last.ckpt"
        )
    return ckpt


def _shape(t: Any) -> list[int] | None:
    return list(t.shape) if isinstance(t, torch.Tensor) else None


def tensor_mismatches(saved: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Keys missing, unexpected or of another shape, each as a short description."""
    out = [f"{k} missing from the checkpoint" for k in expected if k not in saved]
    out += [f"{k} unexpected (not in this model)" for k in saved if k not in expected]
    out += [
        f"{k} {_shape(saved[k])} in the checkpoint vs {_shape(expected[k])} now"
        for k in expected
        if k in saved and _shape(saved[k]) != _shape(expected[k])
    ]
    return out


def check_fits(
    ckpt: Mapping[str, Any],
    module: torch.nn.Module,
    path: str | Path,
    config: Mapping[str, Any] | None = None,
    fallback_config: Mapping[str, Any] | None = None,
) -> list[tuple[str, Any, Any]]:
    """Refuse a checkpoint whose tensors do not fit ``module``, naming the config fields that
    differ (from the checkpoint's embedded config, else ``fallback_config``: its run's
    ``.hydra/config.yaml``) and a few tensors. Returns the config differences when it fits
    (e.g. another learning rate: allowed, the caller reports them)."""
    saved = ckpt.get(CONFIG_KEY) or fallback_config
    diff = config_diff(saved, config) if saved is not None and config is not None else []
    bad = tensor_mismatches(ckpt["state_dict"], module.state_dict())
    if bad:
        settings = f"settings differ: {describe_diff(diff)}; " if diff else ""
        more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
        raise CheckpointError(
            f"ckpt_path={str(path)!r} does not fit this run ({type(module).__name__}): "
            f"{settings}{len(bad)} tensors differ, e.g. {'; '.join(bad[:SHOWN])}{more}. "
            "Resume with the checkpoint's settings, or start a new run without ckpt_path"
        )
    return diff
