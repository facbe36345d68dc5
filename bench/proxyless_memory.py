"""Activation memory and step time of one ProxylessNAS training step, per path mode.

One training step = forward + backward of the cross-entropy of one batch, all parameters
trainable, on one MBConv supernet (32×32 inputs, batch 32; stem 16 → fixed MBConv 16 → stages
24-32-64-96 × 4 searchable blocks, strides 2-2-2-1, final 1×1 conv to 1280; 16 blocks of
6 MBConv (+ zero) candidates):

- ``full``: the one-shot sum of all paths; ``darts``: the softmax(α) mix (α trainable too);
- ``binary``: one path per block sampled from p = softmax(α) (uniform at init), the ProxylessNAS
  w-step; ``single_path``: the derived net of the same sampled paths (``space.single_path``);
- extras: ``darts_wstep`` (mix with α frozen, as the DARTS w-step runs) and ``binary_arch`` (the
  two-path BinaryConnect α-step: the second path runs without autograd, only its output kept),
  and ``binary_smallest`` / ``binary_largest`` (every block k3_e3 / k7_e6: the range over nets).

Saved bytes: a ``torch.autograd.graph.saved_tensors_hooks`` pack hook sees every tensor autograd
saves for backward. Each storage is counted once (keyed by its data pointer, the largest
``numel × element_size`` packed from it), so a tensor saved by several ops, or views of it, is
not double counted; parameters and buffers are excluded (resident whatever the mode). The hook
returns the tensor itself, so all counted tensors stay alive until backward and no address is
reused during the count. ``binary`` and ``single_path`` average over several sampled paths.

Prints one JSON line. ``--quick``: batch 8, 2 blocks per stage, final conv 320.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from nas_lightning.algos.gates import sample_paths
from nas_lightning.algos.hypergrad import frozen
from nas_lightning.algos.mixing import SoftmaxMixing
from nas_lightning.spaces import MobileNetSearchSpace
from nas_lightning.spaces.plans import GatePlan


def saved_bytes(step: Callable[[], torch.Tensor], exclude: set[int]) -> int:
    sizes: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in exclude:
            sizes[ptr] = max(sizes.get(ptr, 0), t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = step()
    loss.backward()
    return sum(sizes.values())


def step_time(step: Callable[[], torch.Tensor], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step().backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smaller config (seconds)")
    ap.add_argument("--samples", type=int, default=3, help="sampled paths for binary/single")
    ap.add_argument("--repeats", type=int, default=3, help="timed steps per mode (median)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: stable timings)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    depth, batch, last = (2, 8, 320) if args.quick else (4, 32, 1280)
    cfg = dict(
        in_channels=3,
        num_classes=10,
        input_size=(32, 32),
        init_channels=16,
        width_mult=1.0,
        first_channels=16,
        widths=[24, 32, 64, 96],
        depths=[depth] * 4,
        strides=[2, 2, 2, 1],
        last_channels=last,
    )
    space = MobileNetSearchSpace(**cfg)
    mixing = SoftmaxMixing(init_std=0.0)  # α = 0 as ProxylessNAS initialises it
    mixing.install(space)
    keys = [d.key for d in space.decisions()]
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    alphas = list(mixing.probs().values())  # one probability row per block
    gen = torch.Generator().manual_seed(0)
    choices = [
        [int(torch.multinomial(p, 1, generator=gen)) for p in alphas] for _ in range(args.samples)
    ]
    params = {p.untyped_storage().data_ptr() for p in space.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in space.buffers()}

    def run(plan=None, net=None) -> torch.Tensor:
        if plan is None:
            return F.cross_entropy((net or space)(x), y)
        with mixing.using(dict(zip(keys, plan, strict=True))):
            return F.cross_entropy(space(x), y)

    def two_path() -> torch.Tensor:
        plans = []
        for p in alphas:
            active, pair = sample_paths(p, True, gen)
            g = torch.zeros_like(p)
            g[active] = 1.0
            plans.append(
                GatePlan(g.requires_grad_(), active, tuple(j for j in pair if j != active))
            )
        with frozen(space.weight_parameters()):
            return run(plans)

    def darts_wstep() -> torch.Tensor:
        with frozen(mixing.arch_parameters()):
            return run()

    full = [[1.0] * len(p) for p in alphas]
    mb = 2.0**-20
    out: dict[str, float | dict] = {}
    out["full.saved_mb"] = saved_bytes(lambda: run(full), params) * mb
    out["darts.saved_mb"] = saved_bytes(run, params) * mb
    out["darts_wstep.saved_mb"] = saved_bytes(darts_wstep, params) * mb
    out["binary_arch.saved_mb"] = saved_bytes(two_path, params) * mb
    binary, single = [], []
    for c in choices:
        binary.append(saved_bytes(lambda c=c: run(c), params) * mb)
        net = space.single_path(c)
        ptrs = {t.untyped_storage().data_ptr() for t in [*net.parameters(), *net.buffers()]}
        single.append(saved_bytes(lambda net=net: run(net=net), ptrs) * mb)
    out["binary.saved_mb"], out["single_path.saved_mb"] = map(statistics.mean, (binary, single))
    # the range over architectures: every block mbconv_k3_e3 (index 0) / mbconv_k7_e6 (index 5)
    out["binary_smallest.saved_mb"] = saved_bytes(lambda: run([0] * len(alphas)), params) * mb
    out["binary_largest.saved_mb"] = saved_bytes(lambda: run([5] * len(alphas)), params) * mb
    out["darts.step_s"] = step_time(run, args.repeats)
    it = iter(choices * args.repeats)
    out["binary.step_s"] = step_time(lambda: run(next(it)), max(args.repeats, len(choices)))
    ratios = {
        "binary_vs_single_path.saved": out["binary.saved_mb"] / out["single_path.saved_mb"],
        "binary_vs_darts.saved": out["binary.saved_mb"] / out["darts.saved_mb"],
        "binary_vs_darts.step": out["binary.step_s"] / out["darts.step_s"],
        "binary_smallest_vs_darts.saved": out["binary_smallest.saved_mb"] / out["darts.saved_mb"],
        "binary_largest_vs_darts.saved": out["binary_largest.saved_mb"] / out["darts.saved_mb"],
    }
    out.update({f"ratio.{k}": v for k, v in ratios.items()})
    out["targets_met"] = {
        "binary<=2.2x_single_path": ratios["binary_vs_single_path.saved"] <= 2.2,
        "binary<=0.12x_darts": ratios["binary_vs_darts.saved"] <= 0.12,
        "binary_step<=0.25x_darts_step": ratios["binary_vs_darts.step"] <= 0.25,
    }
    out["config"] = {**cfg, "batch": batch, "threads": args.threads, "samples": args.samples}
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}
    print(json.dumps(rounded))


if __name__ == "__main__":
    main()
