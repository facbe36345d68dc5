"""Latency lookup table: measured per-op latency keyed by ``OpDesc.key()``.

The table is only valid for the hardware and settings it was measured with, so the file
records them (device, torch version, threads, batch size, timestamp, the command that built
it). Loading it where those differ warns (or, with ``on_mismatch="error"``, refuses); a key the
table lacks is always an error, naming the key, the file and how to rebuild it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import nn

from nas_lightning.latency.base import (
    CalibratedLatency,
    Calibration,
    check_measured_with,
    read_measurement_file,
)
from nas_lightning.latency.timing import Timing, input_shape_of, time_modules
from nas_lightning.ops import OpDesc, is_zero, module_from_desc

FORMAT = "nas_lightning.latency_lut/1"
REBUILD = "python -m nas_lightning.latency profile <the search's overrides> device=<device> out="


class MissingLatencyError(LookupError):
    """The LUT has no entry for an op the search needs."""


def op_item(desc: OpDesc, batch_size: int = 1) -> tuple[nn.Module, tuple[int, ...]]:
    """The standalone module of ``desc`` and its input shape, ready for ``time_modules``."""
    return (
        module_from_desc(desc),
        input_shape_of(desc.in_channels, desc.in_size, batch_size),
    )


def lut_entries(ops: Iterable[OpDesc], timings: dict[str, Timing]) -> dict[str, dict]:
    """Table entries keyed by ``OpDesc.key()``; ``zero`` ops are 0 ms (never timed)."""
    zero = {"median_ms": 0.0, "p10_ms": 0.0, "p90_ms": 0.0, "repeats": 0, "number": 0}
    entries = {}
    for d in ops:
        if not is_zero(d) and d.key() not in timings:
            raise ValueError(f"no timing for op {d.key()}")
        stats = timings[d.key()].to_dict() if not is_zero(d) else zero
        entries[d.key()] = {**stats, "desc": d.to_dict()}
    return entries


def profile_ops(ops: Iterable[OpDesc], batch_size: int = 1, **timing: Any) -> dict[str, dict]:
    """Time every distinct op in isolation (``timing`` → ``time_modules``: device, warmup,
    repeats, rounds, threads, channels_last) and return the table entries."""
    unique = list({d.key(): d for d in ops}.values())
    measured = [d for d in unique if not is_zero(d)]
    timings = time_modules([op_item(d, batch_size) for d in measured], **timing)
    return lut_entries(unique, {d.key(): t for d, t in zip(measured, timings, strict=True)})


def checked_entries(entries: Any, path: Path) -> dict[str, dict]:
    """The ``entries`` table of a LUT file, refused (naming the file and the entry) unless
    every entry has a numeric ``median_ms``."""
    fix = f"rebuild it with: {REBUILD}{path}"
    if not isinstance(entries, dict):
        got = "no 'entries'" if entries is None else f"'entries' of type {type(entries).__name__}"
        raise ValueError(f"latency LUT {str(path)!r} has {got} (expected an object); {fix}")
    for key, entry in entries.items():
        ms = entry.get("median_ms") if isinstance(entry, dict) else None
        if isinstance(ms, bool) or not isinstance(ms, (int, float)):
            raise ValueError(
                f"latency LUT {str(path)!r}: entry {key!r} has median_ms={ms!r}, expected a "
                f"number; {fix}"
            )
    return entries


class LatencyLUT(CalibratedLatency):
    """``op_latency_ms(desc)``: the table's median for ``desc.key()`` (then calibrated)."""

    def __init__(
        self,
        entries: dict[str, dict],
        meta: dict[str, Any] | None = None,
        calibration: Calibration | None = None,
        path: str | None = None,
    ) -> None:
        self.entries = entries
        self.meta = dict(meta or {})
        self.calibration = calibration or Calibration()
        self.path = path

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | None = None,
        batch_size: int | None = None,
        threads: int | None = None,
        on_mismatch: str = "warn",
    ) -> LatencyLUT:
        """Read a LUT written by ``profile``; ``device``/``batch_size``/``threads``, when given,
        are what the search expects, checked against the file per ``on_mismatch``."""
        p = Path(path)
        data = read_measurement_file(p, "latency LUT", f"build it with: {REBUILD}{p}")
        if data.get("format") != FORMAT:
            raise ValueError(
                f"{str(p)!r} is not a latency LUT (format "
                f"{data.get('format')!r}, expected {FORMAT!r})"
            )
        lut = cls(
            checked_entries(data.get("entries"), p),
            data.get("meta"),
            Calibration.from_dict(data.get("calibration")),
            str(p),
        )
        check_measured_with(
            lut.meta,
            f"latency LUT {str(p)!r}",
            {"device": device, "batch_size": batch_size, "threads": threads},
            on_mismatch,
            f"rebuild it with: {REBUILD}{p}",
        )
        return lut

    def spec(self) -> dict[str, Any] | None:
        """How to load this table again (``None`` for a table that was never saved)."""
        if self.path is None:
            return None
        return {"_target_": "nas_lightning.latency.LatencyLUT.load", "path": self.path}

    def save(self, path: str | Path) -> None:
        data = {
            "format": FORMAT,
            "meta": self.meta,
            "calibration": self.calibration.to_dict(),
            "entries": self.entries,
        }
        Path(path).write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        self.path = str(path)

    def missing(self, ops: Iterable[OpDesc]) -> list[str]:
        """Keys of ``ops`` (zero excluded) that the table lacks."""
        return sorted({d.key() for d in ops if not is_zero(d) and d.key() not in self.entries})

    def require(self, ops: Iterable[OpDesc]) -> None:
        """Refuse up front a table that lacks any of ``ops`` (all missing keys named)."""
        missing = self.missing(ops)
        if missing:
            raise MissingLatencyError(self._missing_message(missing))

    def raw_ms(self, desc: OpDesc) -> float:
        entry = self.entries.get(desc.key())
        if entry is None:
            raise MissingLatencyError(self._missing_message([desc.key()]))
        return float(entry["median_ms"])

    def _missing_message(self, keys: list[str]) -> str:
        shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        built = self.meta.get("command")
        return (
            f"latency LUT {self.path!r} has no entry for {shown}: it was profiled for another "
            f"space or input size. Rebuild it with: {REBUILD}{self.path}"
            + (f" (it was built with: {built})" if built else "")
        )

    def __repr__(self) -> str:
        return (
            f"LatencyLUT(path={self.path!r}, entries={len(self.entries)}, "
            f"device={self.meta.get('device')!r}, batch_size={self.meta.get('batch_size')})"
        )
