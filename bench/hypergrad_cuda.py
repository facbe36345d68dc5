"""GPU checks of the second-order DARTS step: run where a CUDA device is available.

- ``depthwise``: every path of ``ops/depthwise.py`` under ``torch.autocast("cuda", bfloat16)``
  (the crash of issue 8.3 was CUDA-only): output/gradient dtypes and relative error vs fp32;
- ``hypergrad64``: each HVP mode against ``full`` in float64 on the GPU;
- ``autocast_hvp``: each HVP mode under bf16 autocast, cosine to its fp32 value;
- ``<config>.<hvp>``: peak ``torch.cuda.max_memory_allocated`` and median synchronised step time
  of the real ``DartsSearch.training_step`` (order 2, NCHW) for the finite-difference, exact and
  double-backward HVPs, at the reduced and paper configs, twice each (compare within a run).

Prints one JSON object (progress on stderr); ``--out`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

import darts_step as ds
import torch
import torch.nn.functional as F

from nas_lightning.algos import DartsSearch, hypergrad
from nas_lightning.ops.depthwise import depthwise_same
from nas_lightning.spaces import CNNSearchSpace

DEV = "cuda"
CONFIGS = {"reduced": ((8, 5, 32), 5), "paper": ((16, 8, 64), 4)}  # (C, cells, batch), steps
OUT: dict[str, Any] = {}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def guarded(name: str, fn, *args) -> None:
    """Run one check; an exception is recorded under ``<name>.error`` and the rest go on."""
    t0 = time.time()
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001  (a device check reports, it does not stop)
        OUT[f"{name}.error"] = repr(e)[:400]
        traceback.print_exc()
    print(f"{name}: {time.time() - t0:.1f} s", file=sys.stderr, flush=True)


def check_depthwise() -> None:
    paths = {"small": (4, 1), "small_s2": (4, 2), "generic": (16, 1), "generic_s2": (16, 2)}
    for path, (size, stride) in paths.items():
        for create_graph in (False, True):
            torch.manual_seed(0)
            x = torch.randn(4, 8, size, size, device=DEV, requires_grad=True)
            w = torch.randn(8, 1, 5, 5, device=DEV, requires_grad=True)
            ref = depthwise_same(x, w, stride)
            r = torch.randn_like(ref)
            ref_gx, ref_gw = torch.autograd.grad((ref * r).sum(), (x, w))
            with torch.autocast(DEV, dtype=torch.bfloat16):
                y = depthwise_same(x, w, stride)
            gx, gw = torch.autograd.grad((y.float() * r).sum(), (x, w), create_graph=create_graph)
            key = f"depthwise.{path}.{'create_graph' if create_graph else 'backward'}"
            OUT[key] = {
                "dtypes": [str(t.dtype) for t in (y, gx, gw)],
                "rel_err": [rel(y, ref), rel(gx, ref_gx), rel(gw, ref_gw)],
            }


def tiny(dtype: torch.dtype):
    """A small supernet with spread α and an SGD (nesterov) that has taken one step."""
    torch.manual_seed(0)
    space = CNNSearchSpace(3, 10, init_channels=8, layers=3, nodes=4).to(DEV, dtype)
    with torch.no_grad():
        for a in space.arch_parameters():
            a.normal_(0, 0.5)
    train, val = [(x.to(DEV, dtype), y.to(DEV)) for x, y in ds.batches(16, 16)]
    opt = torch.optim.SGD(space.weight_parameters(), lr=0.025, momentum=0.9, nesterov=True)
    F.cross_entropy(space(train[0]), train[1]).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    named = dict(space.named_weight_parameters())
    args = (space, space.arch_parameters(), named, train, val, F.cross_entropy)
    return lambda hvp: torch.cat(
        [g.flatten() for g in hypergrad.unrolled_grad(*args, hvp=hvp, optimizer=opt)[0]]
    )


def check_hypergrad64() -> None:
    grads = tiny(torch.float64)
    full = grads("full")
    for mode in ("exact", "double_backward", "finite_difference"):
        OUT[f"hypergrad64.{mode}.rel_err_vs_full"] = rel(grads(mode), full)


def check_autocast_hvp() -> None:
    grads = tiny(torch.float32)
    for mode in ("exact", "double_backward", "finite_difference"):
        ref = grads(mode)
        with torch.autocast(DEV, dtype=torch.bfloat16):
            got = grads(mode)
        OUT[f"autocast_bf16.{mode}.cos_vs_fp32"] = F.cosine_similarity(got, ref, dim=0).item()


def make_step(cfg: tuple[int, int, int], hvp: str):
    """The real second-order training step, on the GPU, as ``darts_step.make_ours`` builds it."""
    C, layers, batch = cfg
    torch.manual_seed(0)
    space = CNNSearchSpace(3, 10, C, layers, channels_last=False, input_size=(32, 32))
    sgd = partial(torch.optim.SGD, lr=0.025, momentum=0.9, weight_decay=3e-4)
    adam = partial(torch.optim.Adam, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    algo = DartsSearch(space, sgd, adam, scheduler=None, grad_clip=5.0, order=2, hvp=hvp).to(DEV)
    opts = [ds._Opt(o) for o in algo.configure_optimizers()]
    algo.optimizers = lambda use_pl_optimizer=True: opts
    algo.manual_backward = lambda loss, *a, **k: loss.backward()
    algo.clip_gradients, algo.log = ds._clip, lambda *a, **k: None
    algo.train()
    train, val = [(x.to(DEV), y.to(DEV)) for x, y in ds.batches(batch)]
    return lambda: algo.training_step({"train": train, "val": val}, 0)


def measure(name: str, cfg: tuple[int, int, int], steps: int, hvp: str) -> None:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step = make_step(cfg, hvp)
    step()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    OUT[f"{name}.step_s"] = statistics.median(times)
    OUT[f"{name}.peak_gb"] = (torch.cuda.max_memory_allocated() - base) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    OUT.update(torch=torch.__version__, device=torch.cuda.get_device_name())
    guarded("depthwise", check_depthwise)
    guarded("hypergrad64", check_hypergrad64)
    guarded("autocast_hvp", check_autocast_hvp)
    for cname in args.configs:
        cfg, steps = CONFIGS[cname]
        for run in range(2):
            for hvp in ("finite_difference", "exact", "double_backward"):
                guarded(
                    f"{cname}.{hvp}.run{run}", measure, f"{cname}.{hvp}.run{run}", cfg, steps, hvp
                )
            fd = f"{cname}.finite_difference.run{run}"
            for hvp in ("exact", "double_backward"):
                key = f"{cname}.{hvp}.run{run}"
                if f"{key}.step_s" in OUT and f"{fd}.step_s" in OUT:
                    OUT[f"{key}.time_vs_fd"] = OUT[f"{key}.step_s"] / OUT[f"{fd}.step_s"]
                    OUT[f"{key}.peak_vs_fd"] = OUT[f"{key}.peak_gb"] / OUT[f"{fd}.peak_gb"]
    line = json.dumps(OUT)
    print(line)
    if args.out:
        args.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
