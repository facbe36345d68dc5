"""Failures inside a run end with one line (what, the value, what to do), the traceback goes to
the run's search.log only, and status.json says ``failed``. Settings that cannot work or make
the search pointless are refused before anything is built."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from hydra.utils import instantiate
from run_helpers import TINY, cli, run_dirs

from nas_lightning.latency import LatencyLUT, space_ops
from nas_lightning.run import build
from nas_lightning.runtime.errors import ConfigError
from nas_lightning.runtime.job import JobContext, run_guarded
from nas_lightning.runtime.settings_check import check_epochs

PROXYLESS = ["experiment=proxyless_digits", "algo.warmup_epochs=0"]


@pytest.fixture(scope="module")
def darts_ckpt(tmp_path_factory) -> Path:
    """A finished 1-epoch tiny DARTS run (init_channels 4): its last.ckpt."""
    logs = tmp_path_factory.mktemp("ckpt") / "outputs"
    assert cli(*TINY, "logger=none", f"paths.log_dir={logs}") == 0
    (run,) = run_dirs(logs)
    return run / "checkpoints" / "last.ckpt"


def _fails_with_console(tmp_path, capsys, *overrides) -> tuple[str, str]:
    """Run the CLI expecting exit 1: the console's last line is the error, search.log has it
    with the traceback, status.json says failed. Returns the error and the log."""
    logs = tmp_path / "outputs"
    code = cli(*TINY, "logger=none", f"paths.log_dir={logs}", *overrides)
    captured = capsys.readouterr()
    assert code == 1
    (status_file,) = logs.glob("*/runs/*/status.json")
    status = json.loads(status_file.read_text())
    assert status["status"] == "failed" and status["exit_code"] == 1
    log = (status_file.parent / "search.log").read_text()
    assert status["error"] in log and "Traceback (most recent call last)" in log
    assert "Traceback" not in captured.err + captured.out  # the console has the line only
    last = captured.err.strip().splitlines()[-1]
    assert last == f"Error: {status['error']} (traceback in {status_file.parent / 'search.log'})"
    return status["error"], log


def test_checkpoint_of_another_init_channels(tmp_path, capsys, darts_ckpt, one_thread):
    error, _ = _fails_with_console(
        tmp_path, capsys, "space.init_channels=8", f"ckpt_path={darts_ckpt}"
    )
    assert error.startswith(
        f"ckpt_path='{darts_ckpt}' does not fit this run (DartsSearch): settings differ: "
        "space.init_channels: 4 in the checkpoint's run, 8 now; "
    )
    assert "space.stem.0.weight [12, 1, 3, 3] in the checkpoint vs [24, 1, 3, 3] now" in error
    assert error.endswith(
        "Resume with the checkpoint's settings, or start a new run without ckpt_path"
    )
    assert len(error) < 600  # not a 1,196-line size-mismatch dump


def test_random_bytes_as_checkpoint(tmp_path, capsys, one_thread):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(os.urandom(4096))
    error, _ = _fails_with_console(tmp_path, capsys, f"ckpt_path={junk}")
    assert error == (
        f"ckpt_path='{junk}' is not a checkpoint (not the zip archive torch.save writes: "
        "truncated, or another kind of file); point ckpt_path at a .ckpt written by a search "
        "run (<run dir>/checkpoints/last.ckpt)"
    )


def test_darts_checkpoint_given_to_proxyless(tmp_path, capsys, darts_ckpt, one_thread):
    error, _ = _fails_with_console(tmp_path, capsys, *PROXYLESS, f"ckpt_path={darts_ckpt}")
    assert error.startswith(
        f"ckpt_path='{darts_ckpt}' does not fit this run (ProxylessSearch): settings differ: "
        "algo._target_: 'nas_lightning.algos.DartsSearch' in the checkpoint's run, "
        "'nas_lightning.algos.ProxylessSearch' now; space._target_: "
    )


def test_negative_arch_lr_names_the_optimiser(tmp_path, capsys, one_thread):
    error, _ = _fails_with_console(tmp_path, capsys, "algo.arch_optimizer.lr=-1")
    assert error == (
        "algo.arch_optimizer.lr=-1 is invalid for torch.optim.Adam (Invalid learning rate: -1); "
        "fix algo.arch_optimizer.lr"
    )


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", " is not valid JSON (Expecting property name enclosed in double quotes"),
        ('{"format": "nas_lightning.latency_lut/1"}', " has no 'entries' (expected an object)"),
        (
            '{"format": "nas_lightning.latency_lut/1", "entries": {"k": {"median_ms": "fast"}}}',
            ": entry 'k' has median_ms='fast', expected a number",
        ),
    ],
    ids=["invalid-json", "no-entries", "wrong-type"],
)
def test_malformed_lut_names_the_file(tmp_path, capsys, content, problem, one_thread):
    lut = tmp_path / "lut.json"
    lut.write_text(content)
    error, _ = _fails_with_console(
        tmp_path, capsys, *PROXYLESS, "latency=lut", f"latency.path={lut}"
    )
    assert error.startswith(f"ValueError: latency LUT '{lut}'{problem}")
    assert error.endswith(f"python -m nas_lightning.latency profile <the search's overrides> "
                          f"device=<device> out={lut}")  # fmt: skip


def test_lut_for_another_input_size_is_refused_when_the_run_is_built(tmp_path, compose_cfg):
    other = compose_cfg(*PROXYLESS)
    space = instantiate(other.space, in_channels=1, num_classes=10, input_size=(16, 16))
    entries = {
        d.key(): {"median_ms": 1.0, "desc": d.to_dict()} for d in space_ops(space) if d.op != "zero"
    }
    path = tmp_path / "lut16.json"
    LatencyLUT(entries, path=str(path)).save(path)
    cfg = compose_cfg(*PROXYLESS, "latency=lut", f"latency.path={path}")  # digits are 8x8
    with pytest.raises(LookupError, match="profiled for another space or input size"):
        build(cfg)  # not mid-epoch: before a trainer exists


def test_latency_with_darts_says_why(tmp_path, capsys, one_thread):
    error, _ = _fails_with_console(tmp_path, capsys, "latency=flops")
    assert error == (
        "latency=flops is set but algo=darts (DartsSearch) takes no latency model; use an "
        "algorithm that does (e.g. algo=proxyless) or drop latency="
    )


def test_wandb_without_key_suggests_offline(tmp_path, capsys, monkeypatch, one_thread):
    import wandb

    wandb.teardown()  # forget settings of earlier offline runs in this process
    for var in ("WANDB_API_KEY", "WANDB_MODE"):  # WandbLogger(offline) leaves WANDB_MODE set
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no stored login
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    error, _ = _fails_with_console(tmp_path, capsys, "logger=wandb")
    assert "logger.offline=true" in error and error.startswith("logger=wandb found no W&B API key")


@pytest.mark.parametrize(
    "trainer, algo, message",
    [
        (
            {"max_epochs": 3},
            {"warmup_epochs": 3},
            "algo.warmup_epochs=3 >= trainer.max_epochs=3: α would never be trained and the "
            "genotype would be the initial α's; lower algo.warmup_epochs or raise "
            "trainer.max_epochs",
        ),
        (
            {"max_epochs": -1},
            {"scheduler": {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "T_max": -1}},
            "trainer.max_epochs=-1 (unbounded) cannot drive algo.scheduler (CosineAnnealingLR, "
            "algo.scheduler.T_max=-1): give a finite trainer.max_epochs, or set "
            "algo.scheduler=null for a constant learning rate",
        ),
    ],
    ids=["warmup>=max_epochs", "unbounded-cosine"],
)
def test_pointless_settings_are_refused(trainer, algo, message):
    with pytest.raises(ConfigError) as err:
        check_epochs(trainer, algo)
    assert str(err.value) == message


def test_unbounded_epochs_run_with_a_constant_lr():
    check_epochs({"max_epochs": -1}, {"scheduler": None, "warmup_epochs": 5})


def test_warmup_refused_through_the_cli(tmp_path, capsys, one_thread):
    error, _ = _fails_with_console(tmp_path, capsys, "algo.warmup_epochs=1")
    assert error.startswith("algo.warmup_epochs=1 >= trainer.max_epochs=1")


def test_ctrl_c_is_recorded_as_interrupted_with_the_resume_command(tmp_path, capsys):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    quoted = "x='a b'"  # a Hydra-quoted override survives the shell
    ctx = JobContext(tmp_path, overrides=["seed=3", "ckpt_path=old.ckpt", quoted])

    def interrupted():
        raise KeyboardInterrupt

    outcome = run_guarded(interrupted, ctx)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    line = (
        f"Interrupted by Ctrl+C (exit 130); checkpoint saved to {ckpt}. The run can be resumed "
        f"with: python -m nas_lightning seed=3 {shlex.quote(quoted)} ckpt_path={ckpt}"
    )
    assert (outcome.status, outcome.exit_code) == ("interrupted", 130)
    assert capsys.readouterr().err.strip() == line
    assert json.loads((tmp_path / "status.json").read_text())["error"] == line
