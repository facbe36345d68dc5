"""The ``profile`` and ``fit`` commands as plain functions (no Hydra; ``check`` is
:func:`nas_lightning.latency.check.run_check`).

Each takes a space with the latency interface, the per-sample input shape ``(C, H, W)`` and
the timing settings (``device``, ``warmup``, ``repeats``, ``rounds``, ``threads``,
``channels_last``, ``clock`` — see :func:`~nas_lightning.latency.timing.time_modules`), writes
its file and returns a JSON-able summary.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nas_lightning.latency.base import CalibratedLatency
from nas_lightning.latency.check import calibrate, errors, predicted_latency
from nas_lightning.latency.lut import LatencyLUT, lut_entries, op_item
from nas_lightning.latency.predictor import LatencyPredictor
from nas_lightning.latency.sampling import (
    LatencySpace,
    sample_choices,
    space_ops,
    training_ops,
)
from nas_lightning.latency.timing import Timing, measurement_meta, time_modules
from nas_lightning.ops import OpDesc, is_zero

log = logging.getLogger(__name__)


def _measure(
    space: LatencySpace,
    ops: Sequence[OpDesc],
    choices: list[list[int]],
    input_shape: Sequence[int],
    batch_size: int,
    timing: dict[str, Any],
) -> tuple[dict[str, Timing], list[float]]:
    """Time the non-zero ``ops`` in isolation and the ``choices`` networks end to end, in the
    same round-robin passes so that load from other processes hits both alike."""
    measured = [d for d in {d.key(): d for d in ops}.values() if not is_zero(d)]
    nets = [(space.single_path(c), (batch_size, *input_shape)) for c in choices]
    timings = time_modules([op_item(d, batch_size) for d in measured] + nets, **timing)
    by_key = {d.key(): t for d, t in zip(measured, timings, strict=False)}
    return by_key, [t.median_ms for t in timings[len(measured) :]]


def _calibration_choices(space: LatencySpace, n: int, seed: int) -> list[list[int]]:
    if n != 0 and n < 3:
        raise ValueError(f"calibrate={n}: need 0 (no calibration) or >= 3 architectures")
    return sample_choices(space, n, seed) if n else []


def _calibrate(
    model: CalibratedLatency,
    space: LatencySpace,
    choices: list[list[int]],
    measured: list[float],
    seed: int,
    terms: Sequence[str],
) -> dict[str, Any]:
    """Fit ``model.calibration`` to the calibration networks (none: keep raw sums)."""
    if not choices:
        return {}
    before = errors(predicted_latency(model, space, choices, raw=True), measured)
    model.calibration = calibrate(model, space, choices, measured, terms)
    after = errors(predicted_latency(model, space, choices), measured)
    msg = "calibration on %d architectures: %s; MAPE %.1f%% -> %.1f%%"
    log.info(msg, len(choices), model.calibration, before["mape_pct"], after["mape_pct"])
    return {
        "calibration_architectures": len(choices),
        "calibration_seed": seed,
        "calibration_terms": list(terms),
        "calibration_fit": {"raw": before, "calibrated": after},
    }


def _meta(
    timing: dict[str, Any], batch_size: int, input_shape: Sequence[int], **extra: Any
) -> dict[str, Any]:
    rest = {"clock": "wall", **{k: v for k, v in timing.items() if k not in ("device", "threads")}}
    return measurement_meta(
        timing.get("device", "cpu"),
        batch_size,
        timing.get("threads"),
        **rest,
        input_shape=list(input_shape),
        **extra,
    )


def profile(
    space: LatencySpace,
    input_shape: Sequence[int],
    out: str | Path,
    *,
    batch_size: int = 1,
    calibrate_n: int = 10,
    terms: Sequence[str] = ("scale",),
    seed: int = 0,
    timing: dict[str, Any],
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Time every distinct op of ``space`` in isolation and write the LUT to ``out``."""
    ops = space_ops(space)
    choices = _calibration_choices(space, calibrate_n, seed)
    msg = "profiling %d distinct ops (+%d calibration networks) at batch size %d"
    log.info(msg, len(ops), len(choices), batch_size)
    timings, nets = _measure(space, ops, choices, input_shape, batch_size, timing)
    lut = LatencyLUT(
        lut_entries(ops, timings), _meta(timing, batch_size, input_shape, **(meta or {}))
    )
    lut.meta.update(_calibrate(lut, space, choices, nets, seed, terms))
    lut.save(out)
    return {"out": str(out), "entries": len(lut.entries), "calibration": lut.calibration.to_dict()}


def fit(
    space: LatencySpace,
    input_shape: Sequence[int],
    out: str | Path,
    *,
    samples: int = 300,
    holdout: float = 0.2,
    exact_fraction: float = 0.5,
    model: str = "mlp",
    fit_kwargs: dict[str, Any] | None = None,
    batch_size: int = 1,
    calibrate_n: int = 10,
    terms: Sequence[str] = ("scale",),
    seed: int = 0,
    timing: dict[str, Any],
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure ``samples`` ops, report held-out error, fit on all and write the predictor."""
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must lie strictly between 0 and 1, got {holdout!r}")
    ops = training_ops(space, samples, seed, exact_fraction)
    choices = _calibration_choices(space, calibrate_n, seed)
    msg = "measuring %d training ops (+%d calibration networks) at batch size %d"
    log.info(msg, len(ops), len(choices), batch_size)
    timings, nets = _measure(space, ops, choices, input_shape, batch_size, timing)
    y = [timings[d.key()].median_ms for d in ops]
    perm = torch.randperm(len(ops), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = max(1, round(holdout * len(ops)))
    train, test = perm[n_test:], perm[:n_test]
    kw = fit_kwargs or {}
    held = LatencyPredictor.fit([ops[i] for i in train], [y[i] for i in train], model, **kw)
    held_out = errors(held.predict_ms([ops[i] for i in test]).tolist(), [y[i] for i in test])
    msg = "held-out error on %d ops: RMSE %.4f ms, MAPE %.1f%%"
    log.info(msg, n_test, held_out["rmse_ms"], held_out["mape_pct"])
    info = _meta(
        timing,
        batch_size,
        input_shape,
        samples=len(ops),
        model=model,
        held_out={**held_out, "n": n_test},
        **(meta or {}),
    )
    predictor = LatencyPredictor.fit(ops, y, model, meta=info, **kw)
    predictor.meta.update(_calibrate(predictor, space, choices, nets, seed, terms))
    predictor.save(out)
    return {
        "out": str(out),
        "samples": len(ops),
        "model": model,
        "held_out": held_out,
        "calibration": predictor.calibration.to_dict(),
    }
