"""Cost of DivergenceGuard's per-batch check (JSON out).

Builds the DARTS supernet (default: the standard config, C=16, 8 cells, 32×32), fills every
gradient with one backward, then times the guard's fused finiteness check over the loss, α,
weights, both gradients and the BatchNorm statistics (median of ``--repeats``). Compare with
the step time in the README (first order, same config).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time

import torch

from nas_lightning.algos import DartsSearch
from nas_lightning.callbacks.divergence import DivergenceGuard, all_finite
from nas_lightning.spaces import CNNSearchSpace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sgd = functools.partial(torch.optim.SGD, lr=0.1)
    module = DartsSearch(CNNSearchSpace(3, 10, args.channels, args.layers), sgd, sgd)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    loss = torch.nn.functional.cross_entropy(module.space(x), y)
    loss.backward()
    guard = DivergenceGuard()
    guard.setup(None, module, "fit")
    times = []
    for _ in range(args.repeats + 2):
        t = time.perf_counter()
        groups = guard._groups(loss.detach())
        assert all_finite(t for _, named in groups for _, t in named)
        times.append(time.perf_counter() - t)
    tensors = [t for _, named in guard._groups(loss.detach()) for _, t in named]
    print(
        json.dumps(
            {
                "tensors": len(tensors),
                "values": sum(t.numel() for t in tensors),
                "check_ms_median": round(1e3 * statistics.median(times[2:]), 2),
                "threads": args.threads,
            }
        )
    )


if __name__ == "__main__":
    main()
