"""Every config group option composes and instantiates; bad choices are named."""

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

import nas_lightning.conf
from nas_lightning.run import build, instantiate_all, space_inputs

CONF = Path(nas_lightning.conf.__file__).parent
GROUPS = [
    "algo",
    "space",
    "dataset",
    "trainer",
    "logger",
    "callbacks",
    "debug",
    "experiment",
    "latency",
    "task",
]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
# options that only make sense together with another choice
COMPANIONS = {
    ("algo", "proxyless"): ["space=mobilenet"],
    ("space", "mobilenet"): ["algo=proxyless"],
    ("space", "mobilenet_tiny"): ["algo=proxyless"],
    **{
        ("latency", m): ["algo=proxyless", "space=mobilenet_tiny"]
        for m in ("flops", "lut", "predictor")
    },
    ("dataset", "synthetic_text"): ["space=rnn"],  # token streams need the recurrent space
    ("experiment", "darts_ptb_search"): ["dataset=synthetic_text"],  # PTB would download
}
# downloaded text datasets: the space reads the vocabulary size, which needs the files, so only
# the datamodule is built (tests/test_text_download.py checks the loaders on generated files)
TEXT_DATASETS = {"ptb", "wikitext2"}
# measured latency models need their file: without it the error names the path and the fix
NEEDS_FILE = {
    ("latency", "lut"): "latency LUT",
    ("latency", "predictor"): "latency predictor",
    ("experiment", "proxyless_digits_latency"): "latency LUT",  # lut_digits.json, measured here
}


def test_primary_defaults(compose_cfg):
    cfg = compose_cfg()
    assert cfg.algo._target_.endswith("DartsSearch") and cfg.algo.order == 1
    assert cfg.space._target_.endswith("CNNSearchSpace")
    assert cfg.dataset._target_.endswith("DigitsDataModule")
    assert cfg.algo.weight_optimizer.lr == 0.025 and cfg.algo.arch_optimizer.lr == 0.2
    assert cfg.algo.warmup_epochs == 1 and cfg.algo.arch_optimizer.weight_decay == 0
    assert cfg.algo.hvp == "exact" and cfg.algo.fd_r == 0.01
    assert cfg.algo.scheduler.eta_min == 0.001 and cfg.algo.grad_clip == 5.0
    assert cfg.get("experiment") is None and cfg.get("debug") is None


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_instantiates(compose_cfg, group, option):
    cfg = compose_cfg(f"{group}={option}", *COMPANIONS.get((group, option), []))
    OmegaConf.resolve(cfg)
    dm = instantiate(cfg.dataset)
    if group == "dataset" and option in TEXT_DATASETS:
        assert dm.input_shape is None
        return
    space = instantiate(cfg.space, **space_inputs(cfg.space, dm))
    if (group, option) in NEEDS_FILE and not Path(cfg.latency.path).is_file():  # not measured
        with pytest.raises(Exception, match=f"{NEEDS_FILE[group, option]} .*does not exist"):
            instantiate(cfg.latency)
        return
    extra = {"latency": instantiate(cfg.latency)} if cfg.get("latency") else {}
    algo = instantiate(cfg.algo, space=space, **extra)
    assert algo.space is space
    callbacks = instantiate_all(cfg.get("callbacks"))
    loggers = instantiate_all(cfg.get("logger"))
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        with pytest.raises(Exception, match="gpu"):  # Lightning refuses clearly without a GPU
            instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
        return
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    assert trainer.default_root_dir == cfg.paths.output_dir


def test_second_order_two_ways(compose_cfg):
    assert compose_cfg("algo=darts_2nd").algo.order == 2
    assert compose_cfg("algo.order=2").algo.order == 2


def test_unknown_group_option_lists_choices(compose_cfg):
    with pytest.raises(ConfigCompositionException) as e:
        compose_cfg("dataset=imagenet")
    assert "imagenet" in str(e.value) and "digits" in str(e.value) and "cifar10" in str(e.value)


@pytest.mark.parametrize(
    "override, match",
    [
        ("space.nodes=0", "space.nodes=0"),
        ("space.ops=[sep_conv_3x3,conv_9x9]", "'conv_9x9'.*valid ops are"),
        ("space.k=3", "space.k=3.*valid choices"),
        ("algo.hvp=magic", "algo.hvp='magic'.*exact, finite_difference, full"),
        ("algo.fused=sometimes", "algo.fused='sometimes' is invalid; valid choices: null, true"),
    ],
)
def test_bad_values_are_named(compose_cfg, override, match):
    cfg = compose_cfg(override)
    with pytest.raises(Exception, match=match):
        build(cfg)


@pytest.mark.parametrize("value, expected", [("null", None), ("true", True), ("false", False)])
@pytest.mark.parametrize("algo", ["darts", "pcdarts"])
def test_fused_switch_reaches_the_mixing_strategy(compose_cfg, algo, value, expected):
    _, module, _ = build(compose_cfg(f"algo={algo}", f"algo.fused={value}", "debug=tiny"))
    assert module.mixing.fused is expected


def test_wandb_logger_offline_needs_no_login(compose_cfg, monkeypatch, tmp_path):
    import wandb

    wandb.teardown()  # independent of W&B state other tests left in this process
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    cfg = compose_cfg("logger=wandb", "logger.offline=true")
    (logger,) = instantiate_all(cfg.logger)
    logger.log_metrics({"train/loss": 1.0}, step=0)  # starts an offline run, no network
    assert (
        Path(logger.experiment.dir).is_relative_to(Path(cfg.paths.output_dir).resolve())
        or str(cfg.paths.output_dir) in logger.experiment.dir
    )
    logger.experiment.finish()


def test_paper_presets_restore_the_papers_alpha_settings(compose_cfg):
    darts = compose_cfg("experiment=darts_cifar10").algo
    assert (darts.arch_optimizer.lr, darts.arch_optimizer.weight_decay) == (3e-4, 1e-3)
    assert darts.warmup_epochs == 0 and darts.arch_optimizer.betas == [0.5, 0.999]
    pc = compose_cfg("experiment=pcdarts_cifar10").algo
    assert (pc.arch_optimizer.lr, pc.arch_optimizer.weight_decay, pc.warmup_epochs) == (
        6e-4,
        1e-3,
        15,
    )
    rnn = compose_cfg("space=rnn").algo
    assert (rnn.arch_optimizer.lr, rnn.arch_optimizer.weight_decay, rnn.warmup_epochs) == (
        3e-3,
        1e-3,
        0,
    )


def test_retrain_presets_follow_the_darts_protocol(compose_cfg):
    assert compose_cfg().task == "search"
    cfg = compose_cfg("experiment=darts_cifar10_retrain")
    assert cfg.task == "retrain" and cfg.dataset._target_.endswith("CIFAR10DataModule")
    model, module = cfg.retrain.model, cfg.retrain.module
    assert (model.init_channels, model.layers, model.auxiliary) == (36, 20, True)
    assert (module.auxiliary_weight, module.drop_path_prob, module.grad_clip) == (0.4, 0.2, 5.0)
    assert (cfg.trainer.max_epochs, cfg.dataset.batch_size, cfg.dataset.cutout) == (600, 96, 16)
    assert cfg.dataset.train_split == "full" and cfg.trainer.accelerator == "gpu"
    assert module.optimizer.lr == 0.025 and module.optimizer.weight_decay == 3e-4
    assert module.scheduler.T_max == 600 and module.scheduler.eta_min == 0.0
    digits = compose_cfg("experiment=darts_digits_retrain")
    assert digits.task == "retrain" and digits.trainer.accelerator == "cpu"
    assert "cell_diagram" in digits.callbacks and "alpha_heatmap" not in digits.callbacks
    assert "cell_diagram" in compose_cfg().callbacks  # the search draws its genotype too
