"""The one timing function shared by ``profile``, ``fit`` and ``check``.

Per-op tables, predictor training samples and end-to-end measurements are only comparable when
they are measured the same way, so every caller goes through :func:`time_modules`: eval mode,
``torch.inference_mode``, a fixed thread count, warm-up calls, then ``repeats`` timed repeats
with ``time.perf_counter`` (or the thread's CPU-time clock on a shared machine) and the median
(plus p10/p90) of the per-call time.

Sub-millisecond ops are timed in batches of ``number`` back-to-back calls per repeat (chosen
during warm-up so one repeat lasts at least ``min_repeat_ms``), because a single
``perf_counter`` pair around a 20 µs call is dominated by timer and scheduling noise.
"""

from __future__ import annotations

import ctypes
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas_lightning.devices import use_channels_last


@dataclass(frozen=True)
class Timing:
    """Per-call latency statistics over the timed repeats (milliseconds)."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    number: int  # calls per timed repeat

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device`` for ``device``; an unusable device is an error naming the valid ones."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"invalid device {device!r}; valid: cpu, cuda, cuda:<index>") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; valid: cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; valid: cpu, cuda, cuda:<index>")
    return dev


@contextmanager
def num_threads(threads: int | None) -> Iterator[int]:
    """Run with ``torch.set_num_threads(threads)`` (``None``: keep the current count)."""
    previous = torch.get_num_threads()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be None or an integer >= 1, got {threads!r}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_allocator_pinned = False


def pin_allocator() -> None:
    """Keep freed tensors' memory in the heap (glibc; once per process, elsewhere a no-op).

    By default glibc serves large blocks (a 96-channel 32×32 activation: 384 KB) with mmap and
    unmaps them on free, so an op timed alone can pay fresh page faults on every call — an
    op-dependent cost of up to 2× that it does not pay inside a network, where freed buffers
    are reused. Raising the mmap and trim thresholds makes isolated timings agree with
    in-network ones (the process keeps up to 256 MB of freed heap).
    """
    global _allocator_pinned
    if _allocator_pinned or platform.system() != "Linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 64 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    except (OSError, AttributeError):  # not glibc
        pass
    _allocator_pinned = True


def _prepare(
    module: nn.Module, input_shape: Sequence[int], dev: torch.device, channels_last: bool | str
) -> tuple[nn.Module, torch.Tensor]:
    cl = use_channels_last(channels_last, dev)
    fmt = torch.channels_last if cl and len(input_shape) == 4 else None
    module = module.to(dev).eval()
    x = torch.randn(tuple(input_shape), generator=torch.Generator().manual_seed(0)).to(dev)
    if fmt is not None:
        module, x = module.to(memory_format=fmt), x.contiguous(memory_format=fmt)
    return module, x


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def _run(
    module: nn.Module,
    x: torch.Tensor,
    number: int,
    dev: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Per-call milliseconds of ``number`` back-to-back calls."""
    start = clock()
    for _ in range(number):
        module(x)
    _sync(dev)
    return (clock() - start) * 1e3 / number


def time_modules(
    items: Sequence[tuple[nn.Module, Sequence[int]]],
    *,
    device: str | torch.device = "cpu",
    warmup: int = 10,
    repeats: int = 50,
    rounds: int | None = None,
    threads: int | None = None,
    channels_last: bool | str = False,
    min_repeat_ms: float = 1.0,
    clock: str = "wall",
) -> list[Timing]:
    """Latency of each ``module(x)``, ``x`` random of its ``input_shape`` (batch first).

    All items are prepared first (so keep a few hundred small modules at most). The repeats
    are spread over ``rounds`` round-robin passes over all items (default ``None``: one pass
    per repeat, fully interleaved), so that every item samples the same mix of machine states:
    on a shared or virtualised CPU the speed drifts by tens of percent within seconds, and
    timing items one after the other would rank them by when they ran. Measured on this
    project's 2-core VM: the spread of the ratio between two timings of the same 16 networks
    fell from 5-7% (5 rounds) to 1.5-2% (30 rounds, fully interleaved).
    ``channels_last`` puts 4-D inputs and the modules in NHWC memory format (as a space running
    with ``channels_last`` would). Modules are moved to ``device`` and put in eval mode.

    ``clock="wall"`` (``time.perf_counter``) is the latency a user sees; ``clock="cpu"``
    (``time.thread_time``; CPU, one thread) counts only the time the timing thread ran, so
    being descheduled for other processes does not count: use it on a shared, busy machine.
    """
    rounds = repeats if rounds is None else rounds
    if warmup < 0 or repeats < 1 or rounds < 1:
        raise ValueError(
            f"need warmup >= 0, repeats >= 1 and rounds >= 1, got "
            f"warmup={warmup}, repeats={repeats}, rounds={rounds}"
        )
    dev = resolve_device(device)
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; valid: {', '.join(CLOCKS)}")
    if clock == "cpu" and (threads != 1 or dev.type != "cpu"):
        raise ValueError(
            f"clock='cpu' times the calling thread only: it needs device='cpu' and "
            f"threads=1, got device={str(dev)!r}, threads={threads!r}"
        )
    timer = CLOCKS[clock]
    rounds = min(rounds, repeats)
    pin_allocator()
    prepared = [_prepare(m, shape, dev, channels_last) for m, shape in items]
    numbers, samples = [1] * len(prepared), [[] for _ in prepared]
    with num_threads(threads), torch.inference_mode():
        for i, (module, x) in enumerate(prepared):
            for _ in range(warmup):
                module(x)
            _sync(dev)
            while numbers[i] < 1024:  # grow the batch of calls until a repeat is long enough
                elapsed = _run(module, x, numbers[i], dev, timer) * numbers[i]
                if elapsed >= min_repeat_ms:
                    break
                numbers[i] *= min(8, max(2, int(min_repeat_ms / max(elapsed, 1e-6))))
        for r in range(rounds):
            for i, (module, x) in enumerate(prepared):
                n = repeats // rounds + (r < repeats % rounds)
                samples[i] += [_run(module, x, numbers[i], dev, timer) for _ in range(n)]
    levels = torch.tensor([0.5, 0.1, 0.9], dtype=torch.float64)
    out = []
    for s, number in zip(samples, numbers, strict=True):
        q = torch.tensor(s, dtype=torch.float64).quantile(levels)
        out.append(Timing(float(q[0]), float(q[1]), float(q[2]), len(s), number))
    return out


def time_module(module: nn.Module, input_shape: Sequence[int], **kwargs: Any) -> Timing:
    """:func:`time_modules` for one module (``rounds`` then only splits the repeats)."""
    return time_modules([(module, input_shape)], **kwargs)[0]


def input_shape_of(in_channels: int, in_size: Sequence[int], batch_size: int) -> tuple[int, ...]:
    """The ``(batch, C, H, W)`` input of an op or network."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return (batch_size, int(in_channels), *(int(s) for s in in_size))


def _cpu_name() -> str:
    try:  # Linux: the marketing name; platform.processor() is often empty there
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measurement_meta(
    device: str | torch.device, batch_size: int, threads: int | None, **settings: Any
) -> dict[str, Any]:
    """What a measurement depends on, recorded next to the numbers (device, versions, …)."""
    dev = resolve_device(device)
    with num_threads(threads) as effective:
        pass
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
    return {
        "device": str(dev),
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": effective,
        "batch_size": batch_size,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        **settings,
    }
