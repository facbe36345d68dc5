"""One measurement of a search step for ``bench/darts_step.py``, on CPU or on a CUDA device.

CPU: one warm-up step under the saved-bytes hook (``saved_bytes.py``: distinct storages, peak
live over the step, per phase, and total), then the median wall time (``step_s``) and process
CPU time (``step_cpu_s``, the steadier of the two on a shared machine) of ``steps`` steps.

CUDA: the same warm-up, then ``steps`` steps each timed between ``torch.cuda.synchronize()``
calls, the peak of ``torch.cuda.max_memory_allocated`` over them (``peak_mb``), and the
GPU-busy fraction: the CUDA kernel time of one more step under ``torch.profiler`` (the sum of
every op's self device time) over the median step wall time (``gpu_busy``; a launch-bound step
leaves the GPU idle between its many small kernels).

Then, if asked, the aten calls of one step under each counting policy (``aten_count.py``).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from aten_count import count_step
from saved_bytes import SavedBytes

from nas_lightning.ops import mixed_edges
from nas_lightning.ops.depthwise import generic_paths

Build = Callable[[SavedBytes], Callable[[], Any]]


def check_device(device: str) -> torch.device:
    """The bench's device, refused in one line when this machine lacks it."""
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(
                "--device cuda: no CUDA device is available on this machine (torch "
                f"{torch.__version__}); run with --device cpu or on a machine with a GPU"
            )
        return torch.device("cuda")
    raise SystemExit(f"--device {device!r} is invalid; valid choices: cpu, cuda")


@contextmanager
def as_on_accelerator() -> Iterator[None]:
    """What runs on an accelerator, on this CPU: the mixes fused at every size, and the
    device-generic convs (plain ``F.conv2d``, no CPU-only depthwise paths)."""
    saved, mixed_edges.CPU_FUSE_MAX = mixed_edges.CPU_FUSE_MAX, float("inf")
    try:
        with generic_paths():
            yield
    finally:
        mixed_edges.CPU_FUSE_MAX = saved


def _cpu_times(step: Callable[[], Any], steps: int) -> dict[str, float]:
    times, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"step_s": statistics.median(times), "step_cpu_s": statistics.median(cpu)}


def _cuda_times(step: Callable[[], Any], steps: int) -> dict[str, float]:
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    wall = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**20
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    kernel_s = sum(e.self_device_time_total for e in prof.key_averages()) / 1e6
    return {"step_s": wall, "peak_mb": peak, "kernel_s": kernel_s, "gpu_busy": kernel_s / wall}


def measure(
    build: Build,
    steps: int,
    count: bool,
    policies: dict[str, Callable[[], Any]] | None = None,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Bytes, times (and, on CUDA, memory and GPU-busy), then aten calls (see the docstring)."""
    device = device or torch.device("cpu")
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    meter = SavedBytes()
    step = build(meter)
    with meter.hooked():
        step()
    res = (_cuda_times if device.type == "cuda" else _cpu_times)(step, steps)
    res.update(meter.report())
    if count:
        res.update(count_step(step, policies or {"aten_ops": nullcontext}))
    return res


__all__ = ["as_on_accelerator", "check_device", "measure"]
