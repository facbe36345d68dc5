"""The latency CLI and configs on the real (tiny) MobileNet space: ``profile`` and ``check`` as
subprocesses (the user's command line), ``fit`` in-process through the same ``run_command``."""

import json

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from test_cli import _run

from nas_lightning.latency import LatencyLUT, LatencyPredictor, MissingLatencyError, space_ops
from nas_lightning.latency.__main__ import build_space, main, run_command

TINY = ["space=mobilenet", "debug=tiny", "input_shape=[1,8,8]", "num_classes=10"]
FAST = ["warmup=1", "repeats=3", "rounds=1", "calibrate=3"]


def _compose(config_name: str, *overrides: str):
    with initialize_config_module(config_module="nas_lightning.conf", version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def _cli(cwd, *args: str) -> dict:
    run = [*args, f"hydra.run.dir={cwd}/run"]
    proc = _run(["-m", "nas_lightning.latency", *run], cwd, timeout=300)  # asserts exit 0
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A LUT from the CLI (subprocess) and a predictor from ``fit`` (in-process)."""
    tmp = tmp_path_factory.mktemp("latency")
    summary = _cli(tmp, "profile", *TINY, *FAST, "device=cpu", "out=lut.json")
    assert summary["command"] == "profile" and (tmp / "lut.json").is_file()
    cfg = _compose(
        "latency_cli",
        "command=fit",
        *TINY,
        *FAST,
        "samples=30",
        f"out={tmp}/predictor.json",
        "fit.steps=200",
    )
    fit = run_command(cfg, "test")
    assert {"rmse_ms", "mape_pct"} <= set(fit["held_out"])
    assert json.loads((tmp / "predictor.json").read_text())["meta"]["held_out"]["n"] == 6
    return tmp


def test_profile_writes_every_key_the_space_needs(files):
    cfg = _compose("latency_cli", "command=profile", *TINY)
    space, shape = build_space(cfg)
    assert shape == (1, 8, 8)
    lut = LatencyLUT.load(files / "lut.json", device="cpu", batch_size=1, threads=1)
    lut.require(space_ops(space))  # latency_specs() + fixed_specs(), all present
    meta = lut.meta
    assert meta["batch_size"] == 1 and meta["threads"] == 1 and meta["device"] == "cpu"
    assert meta["torch"] and meta["timestamp"] and "profile" in meta["command"]
    bigger, _ = build_space(
        _compose("latency_cli", "command=profile", *TINY, "space.init_channels=8")
    )
    with pytest.raises(MissingLatencyError, match="mbconv:in8x"):
        lut.require(space_ops(bigger))


def test_check_cli_reports_tau_mape_and_plots(files):
    out = _cli(files, "check", *TINY, *FAST, "check.architectures=5", "out=check.png")
    for name in ("lut", "predictor", "flops"):
        assert {"kendall_tau", "mape_pct"} <= set(out[name])
    assert (files / "check.png").read_bytes()[:4] == b"\x89PNG"
    assert len(json.loads((files / "check.json").read_text())["measured_ms"]) == 5


def test_search_configs_instantiate_latency_models(files):
    lut = instantiate(_compose("search", "latency=lut", f"latency.path={files}/lut.json").latency)
    pred = instantiate(
        _compose("search", "latency=predictor", f"latency.path={files}/predictor.json").latency
    )
    flops = instantiate(_compose("search", "latency=flops").latency)
    assert isinstance(lut, LatencyLUT) and isinstance(pred, LatencyPredictor)
    space, _ = build_space(_compose("latency_cli", "command=check", *TINY))
    for model in (lut, pred, flops):
        assert all(model.op_latency_ms(d) >= 0 for d in space_ops(space))


def test_dataset_shape_and_usage_errors(capsys):
    space, shape = build_space(
        _compose("latency_cli", "command=check", "space=mobilenet", "debug=tiny")
    )  # shape read from the digits dataset
    assert shape == (1, 8, 8) and space.fixed_specs()[0].in_size == (8, 8)
    with pytest.raises(SystemExit) as exit_:
        main(["nas_lightning.latency", "bogus"])
    assert exit_.value.code == 2 and "profile, fit, check" in capsys.readouterr().err
    # the DARTS cell space is priceable too: every edge's candidates at their real sizes
    cnn, _ = build_space(
        _compose(
            "latency_cli",
            "command=check",
            "space=cnn",
            "debug=tiny",
            "input_shape=[1,8,8]",
            "num_classes=10",
        )
    )
    ops = {d.op for d in space_ops(cnn)}
    assert {"sep_conv_3x3", "dil_conv_5x5", "conv", "pool_linear"} <= ops
    assert cnn.fixed_specs()[0].key() == "conv:in1x8x8:out12x8x8:k3:s1:e1"
