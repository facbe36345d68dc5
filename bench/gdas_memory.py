"""Saved bytes of GDAS steps against the single-path net of the same sampled architecture.

GDAS runs one sampled op per edge, so its steps should save about what a network with that one
op per edge saves; DARTS (every op on every edge) is printed for scale. DARTS cell space, C=8,
5 cells, batch 32, 32×32 (``--quick``: C=4, batch 8). Saved bytes: ``bench/saved_bytes.py``
(peak live storage saved for backward). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from saved_bytes import SavedBytes

from nas_lightning.algos import hypergrad
from nas_lightning.algos.hypergrad import frozen
from nas_lightning.algos.mixing import GumbelMixing, SoftmaxMixing
from nas_lightning.spaces import CNNSearchSpace
from nas_lightning.spaces.base import FixedPath


def peak_mb(step) -> float:
    counter = SavedBytes()
    with counter.hooked():
        loss = step()
        loss.backward() if loss.requires_grad else None
    return counter.report()["saved_mb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    C, batch = (4, 8) if args.quick else (8, 32)
    cfg = dict(in_channels=3, num_classes=10, init_channels=C, layers=5)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    space = CNNSearchSpace(**cfg)
    gdas = GumbelMixing(tau=10.0)
    gdas.install(space)
    gdas.generator = torch.Generator().manual_seed(0)
    space.train()

    def alpha_step():  # first order, weights frozen, Hard plans (straight-through)
        with frozen(space.weight_parameters()):
            grads, loss = hypergrad.first_order_grad(
                space, gdas.arch_parameters(), (x, y), F.cross_entropy
            )
        return loss

    def w_step():
        with frozen(gdas.arch_parameters()):
            return F.cross_entropy(space(x), y)

    keys = [d.key for d in space.decisions()]

    def single_path_mb() -> float:  # the architecture the last GDAS forward sampled
        net = FixedPath(space, [gdas.last_sample[k] for k in keys]).train()
        return peak_mb(lambda: F.cross_entropy(net(x), y))

    out = {"gdas_alpha.saved_mb": peak_mb(alpha_step), "single_alpha.saved_mb": single_path_mb()}
    out["gdas_w.saved_mb"] = peak_mb(w_step)
    out["single_path.saved_mb"] = single_path_mb()
    darts_space = CNNSearchSpace(**cfg)
    SoftmaxMixing().install(darts_space)
    out["darts_w.saved_mb"] = peak_mb(lambda: F.cross_entropy(darts_space(x), y))
    single_mb = out["single_path.saved_mb"]
    out["ratio.gdas_alpha_vs_single_path"] = (
        out["gdas_alpha.saved_mb"] / out["single_alpha.saved_mb"]
    )
    out["ratio.gdas_w_vs_single_path"] = out["gdas_w.saved_mb"] / single_mb
    out["ratio.gdas_w_vs_darts_w"] = out["gdas_w.saved_mb"] / out["darts_w.saved_mb"]
    out["target_met.gdas<=1.5x_single_path"] = (
        max(out["ratio.gdas_alpha_vs_single_path"], out["ratio.gdas_w_vs_single_path"]) <= 1.5
    )
    out["config"] = {**cfg, "batch": batch, "input": [32, 32]}
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))


if __name__ == "__main__":
    main()
