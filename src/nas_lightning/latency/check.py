"""End-to-end validation: sampled architectures, measured whole, against per-op sums.

The search ranks architectures by the sum of per-op latencies, so what matters is whether
that sum ranks real networks right (Kendall τ) and how far off it is (MAPE). The same
measurements, on separate *calibration* architectures, fit each measured model's
:class:`~nas_lightning.latency.base.Calibration`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nas_lightning.latency.base import (
    CalibratedLatency,
    Calibration,
    LatencyModel,
    fit_calibration,
    network_latency_ms,
)
from nas_lightning.latency.flops import FlopsLatency
from nas_lightning.latency.lut import LatencyLUT
from nas_lightning.latency.predictor import LatencyPredictor
from nas_lightning.latency.sampling import LatencySpace, architecture_ops, sample_choices
from nas_lightning.latency.timing import Timing, time_modules
from nas_lightning.ops import is_zero

log = logging.getLogger(__name__)


def measure_architectures(
    space: LatencySpace,
    choices: Sequence[Sequence[int]],
    input_shape: Sequence[int],
    **timing: Any,
) -> list[Timing]:
    """End-to-end latency of ``space.single_path(choice)`` for each choice, on an input of
    ``input_shape`` (batch first), timed like the ops (``timing`` → ``time_modules``)."""
    items = [(space.single_path(list(c)), tuple(input_shape)) for c in choices]
    return time_modules(items, **timing)


def predicted_latency(
    model: LatencyModel, space: LatencySpace, choices: Sequence[Sequence[int]], raw: bool = False
) -> list[float]:
    """Per-op sum (plus offset) for each architecture; ``raw`` skips the model's calibration."""
    if raw and isinstance(model, CalibratedLatency):
        return [
            sum(model.raw_ms(d) for d in architecture_ops(space, c) if not is_zero(d))
            for c in choices
        ]
    return [network_latency_ms(model, architecture_ops(space, c)) for c in choices]


def calibrate(
    model: CalibratedLatency,
    space: LatencySpace,
    choices: Sequence[Sequence[int]],
    measured_ms: Sequence[float],
    terms: Sequence[str] = ("scale",),
) -> Calibration:
    """Fit ``model``'s calibration ``terms`` (see ``fit_calibration``) to measured networks."""
    raw = predicted_latency(model, space, choices, raw=True)
    counts = [sum(not is_zero(d) for d in architecture_ops(space, c)) for c in choices]
    return fit_calibration(raw, counts, measured_ms, terms)


def errors(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Kendall τ (ranking), MAPE % and RMSE ms of ``predicted`` against ``measured``."""
    from scipy.stats import kendalltau

    p = torch.tensor(predicted, dtype=torch.float64)
    m = torch.tensor(measured, dtype=torch.float64)
    if len(p) != len(m) or len(m) < 2:
        raise ValueError(f"need >= 2 paired values, got {len(p)} predicted and {len(m)} measured")
    tau = kendalltau(p.numpy(), m.numpy()).statistic
    return {
        "kendall_tau": float(tau),
        "mape_pct": float(((p - m).abs() / m).mean() * 100),
        "rmse_ms": float((p - m).pow(2).mean().sqrt()),
    }


def plot_predicted_vs_measured(
    measured: Sequence[float],
    predicted: dict[str, Sequence[float]],
    path: str | Path,
    title: str = "",
) -> None:
    """Scatter of each model's prediction against the measurement, with the y = x line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    values = list(measured) + [v for vs in predicted.values() for v in vs]
    lo, hi = min(values) * 0.9, max(values) * 1.1
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    for name, vs in predicted.items():
        ax.scatter(measured, vs, s=14, alpha=0.8, label=name)
    ax.set(
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel="measured end-to-end latency (ms)",
        ylabel="predicted latency (ms)",
        title=title,
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_check(
    space: LatencySpace,
    input_shape: Sequence[int],
    out: str | Path,
    *,
    architectures: int = 20,
    seed: int = 1,
    lut: str | None = None,
    predictor: str | None = None,
    ms_per_mflop: float = 0.01,
    recalibrate: int = 0,
    recalibrate_seed: int = 0,
    batch_size: int = 1,
    spread: float = 0.0,
    timing: dict[str, Any],
) -> dict[str, Any]:
    """Measure ``architectures`` sampled networks end to end and score each latency model:
    Kendall τ, MAPE, RMSE; writes the scatter PNG to ``out`` (LUT and predictor; FLOPs
    "ms-equivalents" would only stretch the axes) and every number to ``out`` + ``.json``.

    ``recalibrate > 0`` also times that many calibration architectures (``recalibrate_seed``;
    any equal to a held-out one is dropped) interleaved with the held-out ones and refits each
    measured model's calibration on them: on a machine whose speed drifts between the
    ``profile`` and the ``check`` sessions, that scores the models rather than the drift.
    """
    models: dict[str, Any] = {"flops": FlopsLatency(ms_per_mflop, batch_size)}
    expect = {
        "device": str(timing.get("device", "cpu")),
        "batch_size": batch_size,
        "threads": timing.get("threads"),
    }
    for name, path, loader in (
        ("lut", lut, LatencyLUT.load),
        ("predictor", predictor, LatencyPredictor.load),
    ):
        if path is not None:
            models[name] = loader(path, **expect)
            clock, want = models[name].meta.get("clock", "wall"), timing.get("clock", "wall")
            if clock != want:
                log.warning("%s was measured with clock=%s, the check with %s", path, clock, want)
            if models[name].meta.get("calibration_seed") == seed:
                log.warning(
                    "%s was calibrated on seed %d, the check's seed: the check is not "
                    "held out; pass another check seed",
                    path,
                    seed,
                )
    choices = sample_choices(space, architectures, seed, spread)
    extra = sample_choices(space, recalibrate, recalibrate_seed, spread) if recalibrate else []
    extra = [c for c in extra if c not in choices]
    timed = measure_architectures(space, choices + extra, (batch_size, *input_shape), **timing)
    measured = [t.median_ms for t in timed[: len(choices)]]
    preds, report = {}, {}
    for name, model in models.items():
        variants = {}
        if isinstance(model, CalibratedLatency):
            variants["uncalibrated"] = predicted_latency(model, space, choices, raw=True)
            if extra:
                variants["stored_calibration"] = predicted_latency(model, space, choices)
                terms = model.meta.get("calibration_terms", ["scale"])
                cal_ms = [t.median_ms for t in timed[len(choices) :]]
                model.calibration = calibrate(model, space, extra, cal_ms, terms)
        preds[name] = predicted_latency(model, space, choices)
        report[name] = errors(preds[name], measured)
        report[name].update({k: errors(v, measured) for k, v in variants.items()})
    out = Path(out)
    shown = [k for k in preds if k != "flops"] or list(preds)
    labels = {
        f"{k} (τ={report[k]['kendall_tau']:.2f}, MAPE {report[k]['mape_pct']:.1f}%)": preds[k]
        for k in shown
    }
    plot_predicted_vs_measured(
        measured, labels, out, title=f"{architectures} sampled architectures"
    )
    details = {"measured_ms": measured, "predicted_ms": preds, "choices": choices}
    out.with_suffix(".json").write_text(json.dumps({**report, **details}, indent=1) + "\n")
    return {
        "out": str(out),
        "architectures": architectures,
        "recalibrated_on": len(extra),
        **report,
    }
