"""DartsSearch: the bilevel loop moves α and w, keeps them apart, and fails loudly."""

import pytest
import torch
from hydra.utils import instantiate

from nas_lightning.algos import DartsSearch
from nas_lightning.run import build
from nas_lightning.spaces.base import SearchSpace

TINY = [
    "dataset=synthetic",
    "dataset.shape=[1,8,8]",
    "dataset.num_samples=64",
    "dataset.batch_size=16",
    "space.init_channels=4",
    "space.layers=3",
    "algo.warmup_epochs=0",  # α from the first step (the default search warms up one epoch)
    "trainer.accelerator=cpu",
    "trainer.limit_val_batches=1",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def _fit(compose_cfg, *overrides):
    has_callbacks = any(o.startswith("callbacks=") for o in overrides)
    extra = [] if has_callbacks else ["callbacks=none"]
    cfg = compose_cfg(*TINY, "trainer.max_epochs=1", *extra, *overrides)
    dm, algo, trainer = build(cfg)
    arch0 = [a.detach().clone() for a in algo.arch_parameters()]
    w0 = [w.detach().clone() for w in algo.weight_parameters()]
    trainer.fit(algo, datamodule=dm)
    return algo, trainer, arch0, w0


def _moved(before, params):
    return [not torch.equal(b, p.detach()) for b, p in zip(before, params, strict=True)]


@pytest.mark.parametrize(
    "overrides",
    [
        ["algo=darts"],
        ["algo=darts_2nd"],
        ["algo=darts", "algo.order=2", "algo.hvp=finite_difference"],
    ],
    ids=["first_order", "second_order_exact", "second_order_fd"],
)
def test_search_moves_alpha_and_weights(compose_cfg, overrides):
    algo, trainer, arch0, w0 = _fit(compose_cfg, *overrides)
    assert trainer.global_step > 0
    assert all(_moved(arch0, algo.arch_parameters()))
    assert sum(_moved(w0, algo.weight_parameters())) > 0.9 * len(w0)
    metrics = trainer.callback_metrics
    for key in (
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "arch/entropy",
        "arch/skip_count",
    ):
        assert key in metrics, key
    assert 0 < float(metrics["arch/entropy"]) <= torch.log(torch.tensor(8.0)).item() + 1e-6


def test_alpha_never_in_weight_optimizer(compose_cfg):
    cfg = compose_cfg("space.init_channels=4", "space.layers=3")
    _, algo, _ = build(cfg)
    opt_w, opt_a = algo.configure_optimizers()[0]
    in_w = {id(p) for g in opt_w.param_groups for p in g["params"]}
    in_a = {id(p) for g in opt_a.param_groups for p in g["params"]}
    assert in_a == {id(p) for p in algo.arch_parameters()}
    assert not in_a & in_w
    assert isinstance(opt_w, torch.optim.SGD) and isinstance(opt_a, torch.optim.Adam)
    assert opt_a.defaults["betas"] == (0.5, 0.999) or list(opt_a.defaults["betas"]) == [0.5, 0.999]


def test_no_normal_cell_leaves_its_alpha_untouched(compose_cfg):
    algo, _, arch0, _ = _fit(compose_cfg, "space.layers=2")
    assert _moved(arch0, algo.arch_parameters()) == [False, True]


def test_warmup_epochs_freeze_alpha(compose_cfg):
    algo, _, arch0, w0 = _fit(compose_cfg, "algo.warmup_epochs=1")
    assert _moved(arch0, algo.arch_parameters()) == [False, False]
    assert any(_moved(w0, algo.weight_parameters()))


class NoAlpha(SearchSpace):
    """A network without choice points: nothing to search."""

    num_classes = 2
    config: dict = {}

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def derive(self, probs, input_weights=None):
        return None


def test_space_without_alpha_fails_loudly(compose_cfg):
    cfg = compose_cfg()
    with pytest.raises(ValueError, match="space NoAlpha declares no choice points"):
        DartsSearch(
            NoAlpha(), instantiate(cfg.algo.weight_optimizer), instantiate(cfg.algo.arch_optimizer)
        )


@pytest.mark.parametrize("kw, match", [({"order": 3}, "order=3"), ({"hvp": "magic"}, "'magic'")])
def test_bad_algo_options(compose_cfg, kw, match):
    cfg = compose_cfg("space.init_channels=4", "space.layers=3")
    _, algo, _ = build(cfg)
    with pytest.raises(ValueError, match=match):
        DartsSearch(algo.space, algo._weight_optimizer, algo._arch_optimizer, **kw)


def test_resume_from_last_checkpoint_restores_alpha_and_optimisers(compose_cfg, tmp_path):
    common = ["callbacks=default", "~callbacks.rich_progress_bar", "~callbacks.alpha_heatmap"]
    algo, trainer, _, _ = _fit(compose_cfg, *common)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=False)
    alpha_after_epoch0 = saved["state_dict"]["mixing.alpha.normal"]
    assert torch.equal(alpha_after_epoch0, algo.mixing.alpha["normal"].detach())

    cfg = compose_cfg(*TINY, "trainer.max_epochs=2", *common, f"ckpt_path={ckpt}")
    dm, algo2, trainer2 = build(cfg)
    seen = {}

    def spy(*args, **kwargs):  # the first α-step after resume starts from the saved α
        seen.setdefault("alpha", algo2.mixing.alpha["normal"].detach().clone())
        state = trainer2.optimizers[1].state[algo2.mixing.alpha["normal"]]
        seen.setdefault("adam_steps", float(state["step"]))  # a tensor Adam updates in place
        return orig(*args, **kwargs)

    orig = algo2.arch_step
    algo2.arch_step = spy
    trainer2.fit(algo2, datamodule=dm, ckpt_path=cfg.ckpt_path)
    assert trainer2.current_epoch == 2
    assert torch.equal(seen["alpha"], alpha_after_epoch0)
    assert float(seen["adam_steps"]) == trainer.global_step / 2  # one α-step per batch, restored
