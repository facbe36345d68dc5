"""Time one full DARTS search step (α-step + w-step), count its saved bytes and aten calls.

Ours is driven through the real ``DartsSearch.training_step`` without a Trainer (the few
Lightning services it calls are replaced by their plain equivalents), side by side with the
naive reference of ``bench/reference_darts.py`` on the same batches (optionally also that
reference under ``trainer.fit``, ``bench/reference_lightning.py``). Ratios are ours / reference
in the same layout; second order is compared with the reference's (finite-difference) second
order. ``bench/step_measure.py`` says what one measurement is, on CPU and on CUDA.

``aten_ops``: the aten calls of one step (``bench/aten_count.py``, a proxy for kernel
launches), ours counted as it runs on an accelerator: the mixed op fused everywhere and the
device-generic convs (``aten_ops_cpu``: as it runs on this CPU, ``ops/mixed_edges.fuse_on`` and
the CPU-only depthwise paths). Ours is timed
under the device's policy; ``unfused.*`` is our op-by-op path (``mixing.fused = False``) in the
same run, for ``time_ratio_vs_unfused``. ``single_path``: the plain training step of a discrete
net of the same shape, for scale. ``hypergrad.*``: cosine and relative error of each α-gradient
against autograd through the whole unrolled step, float64.

Prints one JSON line (progress on stderr); ``--help`` lists the options. On a shared machine
use ``--threads 1``: OpenMP threads fighting other processes for the cores slow the many
small kernels of a supernet step by 10× and more.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import reference_darts as ref
import torch
import torch.nn.functional as F
from darts_report import markdown, ratios
from saved_bytes import SavedBytes
from step_measure import as_on_accelerator, check_device, measure

from nas_lightning.algos import DartsSearch, hypergrad
from nas_lightning.algos.mixing import SoftmaxMixing
from nas_lightning.spaces import CNNSearchSpace

CONFIGS = {"reduced": (8, 5, 32), "standard": (16, 8, 64)}  # (C, cells, batch), 32×32 inputs
# aten calls do not depend on the batch: --quick counts the standard net at batch 4
CONFIGS["standard_b4"] = (16, 8, 4)
MODES = {"first_order": (1, "exact"), "second_order.exact": (2, "exact")}
MODES["second_order.finite_difference"] = (2, "finite_difference")
MODES["second_order.double_backward"] = (2, "double_backward")  # the pre-forward-AD exact HVP
log = partial(print, file=sys.stderr, flush=True)


def batches(batch: int, size: int = 32, dtype=torch.float32, device="cpu", cl=False) -> list:
    """A fixed (train, val) pair of random batches, identical for every implementation."""
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(batch, 3, size, size, generator=g, dtype=dtype) for _ in range(2)]
    fmt = torch.channels_last if cl else torch.contiguous_format
    x = [xi.to(device=device, memory_format=fmt) for xi in x]
    return [(xi, torch.randint(0, 10, (batch,), generator=g).to(device)) for xi in x]


class _Opt:
    """Stands in for LightningOptimizer: ``training_step`` calls ``zero_grad``/``step`` on it and
    ``DartsSearch.weight_opt`` reads ``.optimizer``."""

    def __init__(self, opt: torch.optim.Optimizer):
        self.optimizer = opt

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)


def make_ours(cfg, meter: SavedBytes, mode: str, cl: bool, device, fused: bool | None = None):
    """Our search step: the real ``DartsSearch.training_step``, configured as conf/algo/darts
    (foreach optimisers; clipping as ``on_before_optimizer_step`` does it)."""
    (C, layers, batch), (order, hvp) = cfg, MODES[mode]
    torch.manual_seed(0)
    space = CNNSearchSpace(3, 10, C, layers, channels_last=cl, input_size=(32, 32))
    sgd = partial(torch.optim.SGD, lr=0.025, momentum=0.9, weight_decay=3e-4, foreach=True)
    adam = partial(torch.optim.Adam, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3, foreach=True)
    algo = DartsSearch(space, sgd, adam, scheduler=None, grad_clip=5.0, order=order, hvp=hvp)
    algo.mixing.fused = fused
    algo.to(device)
    opts = [_Opt(o) for o in algo.configure_optimizers()]
    algo.optimizers = lambda use_pl_optimizer=True: opts
    algo.manual_backward = lambda loss, *args, **kwargs: loss.backward()
    algo.log = lambda *args, **kwargs: None
    step_w = opts[0].step
    opts[0].step = lambda: (algo.on_before_optimizer_step(opts[0].optimizer), step_w())
    algo.arch_step = meter.wrap("alpha", algo.arch_step)
    algo.weight_step = meter.wrap("w", algo.weight_step)
    algo.train()
    train, val = batches(batch, device=device, cl=cl)
    return lambda: algo.training_step({"train": train, "val": val}, 0)


def make_reference(cfg, meter: SavedBytes, unrolled: bool | None, cl: bool, device):
    """The reference step; ``unrolled=None``: the single-path net's plain training step."""
    C, layers, batch = cfg
    torch.manual_seed(0)
    model = ref.Network(C, 10, layers, single_path=unrolled is None).placed(device, cl)
    w_opt, architect = ref.make_weight_optimizer(model), ref.Architect(model)
    train, val = batches(batch, device=device, cl=cl)

    def step() -> None:
        if unrolled is not None:
            with meter.in_phase("alpha"):
                architect.step(train, val, w_opt.param_groups[0]["lr"], w_opt, unrolled)
        with meter.in_phase("w"):
            ref.weight_step(model, train, w_opt)

    return step


def run_config(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """All measurements of one config, per layout (keys ``<config>.<layout>.<step>.*``)."""
    cfg, out, steps, count = CONFIGS[name], {}, args.steps, not args.no_count

    def wanted(prefix: str) -> bool:
        return not any(f"{name}.{prefix}".startswith(s) for s in args.skip)

    def put(prefix: str, res: dict[str, float]) -> None:
        out.update({f"{name}.{prefix}.{k}": round(v, 4) for k, v in res.items()})
        log(f"{name}.{prefix}: {res}")

    refs = {"reference.first_order": False, "reference.second_order": True, "single_path": None}
    for cl in args.layouts:
        tag = "channels_last." if cl else "nchw."
        for prefix, unrolled in refs.items():
            if wanted(tag + prefix) and not (name == "standard_b4" and unrolled is None):
                build = partial(make_reference, cfg, unrolled=unrolled, cl=cl, device=device)
                put(tag + prefix, measure(build, steps, count, device=device))
        for mode in filter(lambda mode: wanted(tag + mode), args.modes):
            if (
                args.unfused and name != "standard_b4" and wanted(f"{tag}unfused.{mode}")
            ):  # the op-by-op path, same run
                build = partial(make_ours, cfg, mode=mode, cl=cl, device=device, fused=False)
                put(f"{tag}unfused.{mode}", measure(build, steps, count, device=device))
            build = partial(make_ours, cfg, mode=mode, cl=cl, device=device)
            policies = {"aten_ops": as_on_accelerator, "aten_ops_cpu": nullcontext}
            if device.type != "cpu":
                policies = {"aten_ops": nullcontext}
            res = measure(build, steps, count, policies, device)
            put(tag + mode, {**res, **ratios(out, f"{name}.{tag}", mode, res)})
    if args.lightning and wanted("reference_lightning"):
        import reference_lightning

        torch.manual_seed(0)
        model = ref.Network(cfg[0], 10, cfg[1])
        times = reference_lightning.lightning_step_times(model, *batches(cfg[2]), False, steps)
        put("reference_lightning.first_order", {"step_s": statistics.median(times)})
    out[f"{name}.shape"] = "C={}, {} cells, batch {}, 32x32".format(*cfg)
    return out


def hypergrad_check() -> dict[str, float]:
    """Each α-gradient against ``full`` (autograd through the virtual step) on a small float64
    supernet with spread α and real momentum buffers (one SGD step is taken first); the virtual
    step mirrors that optimiser. The mixes run fused, as on an accelerator."""
    torch.manual_seed(0)
    space = CNNSearchSpace(3, 10, init_channels=4, layers=3, nodes=4)
    mixing = SoftmaxMixing()
    mixing.install(space)
    space.double(), mixing.double()
    mixing.fused = True
    arch = mixing.arch_parameters()
    with torch.no_grad():
        for a in arch:
            a.normal_(0, 0.5)
    train, val = batches(8, size=16, dtype=torch.float64)
    named = dict(space.named_weight_parameters())
    opt = torch.optim.SGD(named.values(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    F.cross_entropy(space(train[0]), train[1]).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy
    grads = {
        m: hypergrad.unrolled_grad(
            space, arch, named, train, val, loss, hvp=m, optimizer=opt, fd_r=0.01
        )[0]
        for m in hypergrad.HVP_MODES
    }
    grads["first_order"] = hypergrad.first_order_grad(space, arch, val, loss)[0]
    flat = {m: torch.cat([g.flatten() for g in gs if g is not None]) for m, gs in grads.items()}
    full, out = flat.pop("full"), {}
    for mode, g in flat.items():
        out[f"hypergrad.{mode}.cos"] = F.cosine_similarity(g, full, dim=0).item()
        out[f"hypergrad.{mode}.rel_err"] = ((g - full).norm() / full.norm()).item()
    log(out)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    doc = "reduced config (timed), standard_b4 (counted); no double_backward"
    p.add_argument("--quick", action="store_true", help=doc)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 3; 1 if quick)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (refused where absent)")
    p.add_argument("--channels-last", choices=["both", "on", "off"], default="both")
    doc = "also time the reference under trainer.fit (CPU; auto: not with --quick)"
    p.add_argument("--lightning", choices=["auto", "on", "off"], default="auto", help=doc)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON line here")
    p.add_argument("--skip", nargs="*", default=[], help="key prefixes to leave out")
    p.add_argument("--markdown", action="store_true", help="also a Markdown table on stderr")
    p.add_argument("--no-count", action="store_true", help="skip the aten-call counts")
    p.add_argument("--configs", nargs="*", choices=list(CONFIGS), help="default: see --quick")
    p.add_argument("--no-unfused", dest="unfused", action="store_false", help="skip unfused.*")
    args = p.parse_args(argv)
    device = check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    args.steps = args.steps or (1 if args.quick else 3)
    args.layouts = {"both": [False, True], "on": [True], "off": [False]}[args.channels_last]
    auto = not args.quick and device.type == "cpu"
    args.lightning = args.lightning == "on" or (args.lightning == "auto" and auto)
    args.modes = [m for m in MODES if not (args.quick and m.endswith("double_backward"))]
    out: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    out.update(steps=args.steps, channels_last=args.channels_last, device=str(device))
    t0 = time.perf_counter()
    out.update(hypergrad_check())
    quick = ["reduced", "standard_b4"]
    for name in args.configs or (quick if args.quick else ["reduced", "standard"]):
        out.update(run_config(name, args, device))
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    line = json.dumps(out)
    print(line)
    if args.out:
        args.out.write_text(line + "\n")
    if args.markdown:
        log(markdown(out))
    return out


if __name__ == "__main__":
    main()
