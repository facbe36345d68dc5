"""Latency models for hardware-aware search: FLOPs proxy, measured LUT, learned predictor.

Every model offers ``op_latency_ms(desc: OpDesc) -> float`` (``zero`` → 0.0); the search sums
it (or its expectation under the architecture probabilities, :func:`expected_latency`). The
profiling / fitting / checking CLI is ``python -m nas_lightning.latency {profile,fit,check}``.
"""

from nas_lightning.latency.base import (
    CalibratedLatency,
    Calibration,
    LatencyModel,
    LatencyTables,
    expected_latency,
    fit_calibration,
    latency_tables,
    network_latency_ms,
)
from nas_lightning.latency.check import (
    calibrate,
    errors,
    measure_architectures,
    plot_predicted_vs_measured,
    predicted_latency,
    run_check,
)
from nas_lightning.latency.flops import FlopsLatency, OpCost, op_cost, op_macs
from nas_lightning.latency.lut import LatencyLUT, MissingLatencyError, profile_ops
from nas_lightning.latency.predictor import LatencyPredictor, features
from nas_lightning.latency.sampling import (
    architecture_ops,
    sample_choices,
    space_ops,
    training_ops,
)
from nas_lightning.latency.timing import Timing, measurement_meta, time_module, time_modules

__all__ = [
    "CalibratedLatency",
    "Calibration",
    "FlopsLatency",
    "LatencyLUT",
    "LatencyModel",
    "LatencyPredictor",
    "LatencyTables",
    "MissingLatencyError",
    "OpCost",
    "Timing",
    "architecture_ops",
    "calibrate",
    "errors",
    "expected_latency",
    "features",
    "fit_calibration",
    "latency_tables",
    "measure_architectures",
    "measurement_meta",
    "network_latency_ms",
    "op_cost",
    "op_macs",
    "plot_predicted_vs_measured",
    "predicted_latency",
    "profile_ops",
    "run_check",
    "sample_choices",
    "space_ops",
    "time_module",
    "time_modules",
    "training_ops",
]
