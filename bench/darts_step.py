"""Time one full DARTS search step (α-step + w-step) and count the bytes saved for backward.

Ours is driven through the real ``DartsSearch.training_step`` without a Trainer (the few
Lightning services it calls are replaced by their plain equivalents), side by side with the
naive reference of ``bench/reference_darts.py`` on the same batches (optionally also that
reference under ``trainer.fit``, ``bench/reference_lightning.py``). Ratios are ours / reference;
second order is compared with the reference's second order (finite difference).

Each measurement: one warm-up step under the saved-bytes hook (``bench/saved_bytes.py``:
distinct storages, peak live over the step, per phase, and total), then the median time of
``--steps`` unhooked steps. ``single_path`` is the plain training step of a discrete net of the
same shape (sep_conv_3x3 on two edges per node), for scale. ``hypergrad.*``: cosine and
relative error of each α-gradient against autograd through the whole unrolled step, float64.

Prints one JSON line (progress on stderr); ``--help`` lists the options. On a shared machine
use ``--threads 1``: OpenMP threads fighting other processes for the cores slow the many
small kernels of a supernet step by 10× and more.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import reference_darts as ref
import torch
import torch.nn.functional as F
from saved_bytes import SavedBytes
from torch import Tensor, nn

from nas_lightning.algos import DartsSearch, hypergrad
from nas_lightning.spaces import CNNSearchSpace

CONFIGS = {"reduced": (8, 5, 32), "standard": (16, 8, 64)}  # (C, cells, batch), 32×32 inputs
MODES = {"first_order": (1, "exact"), "second_order.exact": (2, "exact")}
MODES["second_order.finite_difference"] = (2, "finite_difference")
MODES["second_order.double_backward"] = (2, "double_backward")  # the pre-forward-AD exact HVP
Batch = tuple[Tensor, Tensor]
log = partial(print, file=sys.stderr, flush=True)


def batches(batch: int, size: int = 32, dtype: torch.dtype = torch.float32) -> list[Batch]:
    """A fixed (train, val) pair of random batches, identical for every implementation."""
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(batch, 3, size, size, generator=g, dtype=dtype) for _ in range(2)]
    return [(xi, torch.randint(0, 10, (batch,), generator=g)) for xi in x]


class _Opt:
    """Stands in for LightningOptimizer: ``training_step`` calls ``zero_grad``/``step`` on it and
    ``DartsSearch.weight_opt`` reads ``.optimizer``."""

    def __init__(self, opt: torch.optim.Optimizer):
        self.optimizer = opt

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)


def _clip(opt: _Opt, gradient_clip_val: float, gradient_clip_algorithm: str) -> None:
    """What ``LightningModule.clip_gradients(..., "norm")`` does on one CPU device."""
    nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], gradient_clip_val, foreach=True)


def make_ours(cfg: tuple[int, int, int], meter: SavedBytes, mode: str, channels_last: bool):
    """Our search step: the real ``DartsSearch.training_step``, configured as conf/algo/darts."""
    (C, layers, batch), (order, hvp) = cfg, MODES[mode]
    torch.manual_seed(0)
    space = CNNSearchSpace(3, 10, C, layers, channels_last=channels_last, input_size=(32, 32))
    sgd = partial(torch.optim.SGD, lr=0.025, momentum=0.9, weight_decay=3e-4, foreach=True)
    adam = partial(torch.optim.Adam, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3, foreach=True)
    algo = DartsSearch(space, sgd, adam, scheduler=None, grad_clip=5.0, order=order, hvp=hvp)
    opts = [_Opt(o) for o in algo.configure_optimizers()]
    algo.optimizers = lambda use_pl_optimizer=True: opts
    algo.manual_backward = lambda loss, *args, **kwargs: loss.backward()
    algo.clip_gradients, algo.log = _clip, lambda *args, **kwargs: None
    algo.arch_step = meter.wrap("alpha", algo.arch_step)
    algo.weight_step = meter.wrap("w", algo.weight_step)
    algo.train()
    train, val = batches(batch)
    return lambda: algo.training_step({"train": train, "val": val}, 0)


def make_reference(cfg: tuple[int, int, int], meter: SavedBytes, unrolled: bool | None):
    """The reference step; ``unrolled=None``: the single-path net's plain training step."""
    C, layers, batch = cfg
    torch.manual_seed(0)
    model = ref.Network(C, 10, layers, single_path=unrolled is None)
    w_opt, architect = ref.make_weight_optimizer(model), ref.Architect(model)
    train, val = batches(batch)

    def step() -> None:
        if unrolled is not None:
            with meter.in_phase("alpha"):
                architect.step(train, val, w_opt.param_groups[0]["lr"], w_opt, unrolled)
        with meter.in_phase("w"):
            ref.weight_step(model, train, w_opt)

    return step


def measure(build: Callable[[SavedBytes], Callable[[], Any]], steps: int) -> dict[str, float]:
    """The hooked warm-up step gives the bytes, then the median time of ``steps`` steps."""
    gc.collect()
    meter = SavedBytes()
    step = build(meter)
    with meter.hooked():
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times), **meter.report()}


def run_config(
    name: str, steps: int, layouts: list[bool], lightning: bool, skip: list[str]
) -> dict[str, Any]:
    """All measurements of one config; ``skip``: key prefixes not to run (e.g. to leave out
    ``standard.second_order.exact`` where memory is short)."""
    cfg, out = CONFIGS[name], {}

    def wanted(prefix: str) -> bool:
        return not any(f"{name}.{prefix}".startswith(s) for s in skip)

    def put(prefix: str, res: dict[str, float]) -> None:
        out.update({f"{name}.{prefix}.{k}": round(v, 4) for k, v in res.items()})
        log(f"{name}.{prefix}: {res}")

    refs = {"reference.first_order": False, "reference.second_order": True, "single_path": None}
    for prefix, unrolled in refs.items():
        if wanted(prefix):
            put(prefix, measure(lambda m, u=unrolled: make_reference(cfg, m, u), steps))
    if lightning and wanted("reference_lightning"):
        import reference_lightning

        torch.manual_seed(0)
        model = ref.Network(cfg[0], 10, cfg[1])
        times = reference_lightning.lightning_step_times(model, *batches(cfg[2]), False, steps)
        put("reference_lightning.first_order", {"step_s": statistics.median(times)})
    for cl in layouts:  # the first layout is the primary one: its keys carry no layout tag
        tag = "" if cl == layouts[0] else ("channels_last." if cl else "nchw.")
        for mode in filter(lambda mode: wanted(tag + mode), MODES):
            res = measure(lambda m, mode=mode, cl=cl: make_ours(cfg, m, mode, cl), steps)
            base = f"{name}.reference.{mode.split('.')[0]}"
            if f"{base}.step_s" in out:
                ref_s, ref_mb = out[f"{base}.step_s"], out[f"{base}.saved_mb"]
                res["speedup_vs_reference"] = ref_s / res["step_s"]
                res["time_ratio_vs_reference"] = res["step_s"] / ref_s
                res["saved_ratio_vs_reference"] = res["saved_mb"] / ref_mb
            put(tag + mode, res)
        fd = f"{name}.{tag}second_order.finite_difference"
        for hvp in ("exact", "double_backward"):  # each exact HVP against the paper's mode
            key = f"{name}.{tag}second_order.{hvp}"
            if f"{key}.step_s" in out and f"{fd}.step_s" in out:
                for k, m in (("time", "step_s"), ("saved", "saved_mb")):
                    out[f"{key}.{k}_ratio_vs_finite_difference"] = round(
                        out[f"{key}.{m}"] / out[f"{fd}.{m}"], 3
                    )
    out[f"{name}.primary_layout"] = "channels_last" if layouts[0] else "nchw"
    out[f"{name}.shape"] = "C={}, {} cells, batch {}, 32x32".format(*cfg)
    return out


def markdown(out: dict[str, Any]) -> str:
    """The results as a Markdown table (for the README)."""
    rows = ["| config | step | s/step | saved MB (peak) | time / ref | saved / ref |"]
    rows.append("|---|---|---|---|---|---|")
    for key in (k for k in out if k.endswith(".step_s")):
        name, prefix = key.split(".", 1)[0], key.split(".", 1)[1][: -len(".step_s")]
        cells = [out.get(f"{name}.{prefix}.{k}", "") for k in ("step_s", "saved_mb")]
        cells += [out.get(f"{name}.{prefix}.{k}_ratio_vs_reference", "") for k in ("time", "saved")]
        rows.append(f"| {name} | {prefix} | " + " | ".join(map(str, cells)) + " |")
    cos = (f"{m}: cos {out[f'hypergrad.{m}.cos']:.4f}" for m in ("exact", "finite_difference"))
    return "\n".join(rows) + "\n\nhypergradient vs full unroll (float64): " + ", ".join(cos)


def hypergrad_check() -> dict[str, float]:
    """Each α-gradient against ``full`` (autograd through the virtual step) on a small float64
    supernet with spread α and real momentum buffers (one SGD step is taken first); the virtual
    step mirrors that optimiser."""
    torch.manual_seed(0)
    space = CNNSearchSpace(3, 10, init_channels=4, layers=3, nodes=4).double()
    with torch.no_grad():
        for a in space.arch_parameters():
            a.normal_(0, 0.5)
    train, val = batches(8, size=16, dtype=torch.float64)
    named = dict(space.named_weight_parameters())
    opt = torch.optim.SGD(named.values(), lr=0.025, momentum=0.9, weight_decay=3e-4, foreach=True)
    F.cross_entropy(space(train[0]), train[1]).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    arch, loss = space.arch_parameters(), F.cross_entropy
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
    p.add_argument("--quick", action="store_true", help="reduced config + hypergradient only")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 3; 1 if quick)")
    p.add_argument("--channels-last", choices=["both", "on", "off"], default="both")
    doc = "also time the reference under trainer.fit (auto: not with --quick)"
    p.add_argument("--lightning", choices=["auto", "on", "off"], default="auto", help=doc)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON line here")
    p.add_argument("--skip", nargs="*", default=[], help="key prefixes to leave out")
    p.add_argument("--markdown", action="store_true", help="also a Markdown table on stderr")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (1 if args.quick else 3)
    layouts = {"both": [True, False], "on": [True], "off": [False]}[args.channels_last]
    lightning = args.lightning == "on" or (args.lightning == "auto" and not args.quick)
    out: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    out.update(steps=steps, channels_last=args.channels_last, lightning=lightning)
    t0 = time.perf_counter()
    out.update(hypergrad_check())
    for name in ["reduced"] if args.quick else ["reduced", "standard"]:
        out.update(run_config(name, steps, layouts, lightning, args.skip))
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
