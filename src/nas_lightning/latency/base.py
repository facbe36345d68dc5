"""What every latency model offers, and the calibration shared by the measured ones.

The search consumes a latency model through one method, ``op_latency_ms(desc)`` (``zero`` →
0.0). Summing per-op latencies measured in isolation misses what a whole network adds —
framework dispatch, residual adds, cache effects — so the measured models (LUT, predictor)
carry a :class:`Calibration` fitted on end-to-end timings of separate calibration
architectures: ``op = scale × raw (+ op_overhead_ms)`` for every non-zero op, plus a constant
``offset_ms`` per network (it changes no ranking, only absolute values).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from nas_lightning.ops.desc import OpDesc
from nas_lightning.ops.registry import is_zero


@runtime_checkable
class LatencyModel(Protocol):
    def op_latency_ms(self, desc: OpDesc) -> float: ...


@dataclass(frozen=True)
class Calibration:
    scale: float = 1.0
    op_overhead_ms: float = 0.0
    offset_ms: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Calibration:
        return cls(**d) if d else cls()


class CalibratedLatency:
    """Base of the measured models: subclasses implement ``raw_ms`` (isolated op latency)."""

    calibration: Calibration = Calibration()

    def raw_ms(self, desc: OpDesc) -> float:
        raise NotImplementedError

    def op_latency_ms(self, desc: OpDesc) -> float:
        if is_zero(desc):
            return 0.0
        c = self.calibration
        return c.scale * self.raw_ms(desc) + c.op_overhead_ms

    @property
    def offset_ms(self) -> float:
        return self.calibration.offset_ms


MISMATCH_POLICIES = ("warn", "error", "ignore")


def read_measurement_file(path: str | Path, what: str, how_to_make: str) -> dict[str, Any]:
    """The JSON of a LUT / predictor file; a missing file names itself and how to make it."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} {str(p)!r} does not exist; {how_to_make}")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {str(p)!r} is not valid JSON ({err}); {how_to_make}") from err
    if not isinstance(data, dict):
        raise ValueError(
            f"{what} {str(p)!r} holds a JSON {type(data).__name__}, not an object; {how_to_make}"
        )
    return data


def check_measured_with(
    meta: dict[str, Any], what: str, expected: dict[str, Any], on_mismatch: str, fix: str
) -> None:
    """Compare a file's recorded settings (device, batch size, …) with what the search expects
    (``None``: anything goes); warn, raise or ignore a difference per ``on_mismatch``."""
    if on_mismatch not in MISMATCH_POLICIES:
        raise ValueError(f"on_mismatch={on_mismatch!r}; valid: {MISMATCH_POLICIES}")
    for field, want in expected.items():
        have = meta.get(field)
        if want is None or str(want) == str(have) or on_mismatch == "ignore":
            continue
        msg = (
            f"{what} was measured with {field}={have!r} but the search expects "
            f"{field}={want!r}; {fix}"
        )
        if on_mismatch == "error":
            raise ValueError(msg)
        warnings.warn(msg, stacklevel=3)


def network_latency_ms(model: LatencyModel, descs: Iterable[OpDesc]) -> float:
    """Latency of a whole network: the sum of its ops plus the model's per-network offset."""
    return sum(model.op_latency_ms(d) for d in descs) + float(getattr(model, "offset_ms", 0.0))


LatencyTables = tuple[dict[str, torch.Tensor], float]


def latency_tables(
    model: LatencyModel,
    specs: Mapping[str, Sequence[Sequence[OpDesc]]],
    fixed_specs: Iterable[OpDesc],
    dtype: torch.dtype = torch.float32,
    device: Any = None,
) -> LatencyTables:
    """Per decision key, the ms of choosing each candidate, summed over every choice point
    sharing the key (``specs``: key → instances → candidates, as ``space.latency_specs()``), and
    the ms of the fixed ops plus the model's per-network offset."""
    tables = {}
    for key, instances in specs.items():
        ms = [[float(model.op_latency_ms(d)) for d in inst] for inst in instances]
        tables[key] = torch.tensor(ms, dtype=dtype, device=device).sum(0)
    fixed = network_latency_ms(model, fixed_specs)
    return tables, fixed


def expected_latency(probs: Mapping[str, torch.Tensor], tables: LatencyTables) -> torch.Tensor:
    """``E[lat] = fixed + Σ_key Σ_j p_key,j · F_key,j`` (ms), differentiable in ``probs``
    (Cai et al. 2019, eq. 6: the expectation is linear, so the per-key tables suffice)."""
    per_key, fixed = tables
    missing = sorted(set(per_key) - set(probs))
    if missing:
        raise ValueError(f"no probabilities for decisions {missing[:5]}")
    terms = [(probs[k] * t.to(probs[k])).sum() for k, t in per_key.items()]
    return torch.stack(terms).sum() + fixed


CALIBRATION_TERMS = ("scale", "offset", "overhead")


def fit_calibration(
    raw_sums: Sequence[float],
    op_counts: Sequence[int],
    measured: Sequence[float],
    terms: Sequence[str] = ("scale",),
) -> Calibration:
    """Least-squares ``measured ≈ scale·raw_sum [+ offset] [+ op_overhead·op_count]`` in
    relative error (rows weighted by 1/measured), with ``scale, op_overhead ≥ 0``.

    Only the scale by default: sampled architectures span a narrow latency range, where an
    offset or a per-op overhead is nearly collinear with the scale, so with a few noisy
    calibration networks they trade off wildly and extrapolate badly.
    """
    from scipy.optimize import lsq_linear

    bad = [t for t in terms if t not in CALIBRATION_TERMS]
    if bad or "scale" not in terms:
        raise ValueError(
            f"calibration terms {list(terms)} are invalid; valid: 'scale' plus any of "
            f"{CALIBRATION_TERMS[1:]}"
        )
    if not len(raw_sums) == len(op_counts) == len(measured) or len(measured) < 3:
        raise ValueError(
            f"calibration needs >= 3 architectures with raw sums, op counts and "
            f"measurements of equal length, got {len(raw_sums)}, "
            f"{len(op_counts)}, {len(measured)}"
        )
    y = torch.tensor(measured, dtype=torch.float64)
    columns = {
        "scale": (torch.tensor(raw_sums, dtype=torch.float64), 0.0),
        "offset": (torch.ones_like(y), -float("inf")),
        "overhead": (torch.tensor(op_counts, dtype=torch.float64), 0.0),
    }
    used = [t for t in CALIBRATION_TERMS if t in terms]
    a = torch.stack([columns[t][0] for t in used], 1) / y[:, None]
    low, high = [columns[t][1] for t in used], [float("inf")] * len(used)
    sol = lsq_linear(a.numpy(), torch.ones_like(y).numpy(), bounds=(low, high)).x
    fitted = dict(zip(used, (float(v) for v in sol), strict=True))
    return Calibration(
        scale=fitted["scale"],
        offset_ms=fitted.get("offset", 0.0),
        op_overhead_ms=fitted.get("overhead", 0.0),
    )
