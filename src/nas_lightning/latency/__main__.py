"""``python -m nas_lightning.latency {profile,fit,check} [hydra overrides]``.

The subcommand is popped from ``sys.argv`` and becomes the override ``command=<sub>``; the rest
are ordinary Hydra overrides of ``conf/latency_cli.yaml``, which extends the search's config,
so the space is built exactly as the search builds it (``space=mobilenet debug=tiny …``)::

    python -m nas_lightning.latency profile space=mobilenet device=cpu out=lut.json
    python -m nas_lightning.latency fit space=mobilenet samples=300 out=predictor.json
    python -m nas_lightning.latency check space=mobilenet check.architectures=20

Lightning is never imported when ``input_shape`` and ``num_classes`` are given; otherwise the
dataset is instantiated to read them (as ``run.build`` does).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

COMMANDS = ("profile", "fit", "check")
DEFAULT_OUT = {"profile": "lut.json", "fit": "predictor.json", "check": "check.png"}
CONFIG_PATH = "pkg://nas_lightning.conf"
CONFIG_NAME = "latency_cli"
log = logging.getLogger("nas_lightning.latency")


def build_space(cfg: DictConfig) -> tuple[Any, tuple[int, int, int]]:
    """The space as the search builds it, and the per-sample input shape ``(C, H, W)``."""
    if cfg.get("input_shape") is not None and cfg.get("num_classes") is not None:
        shape, num_classes = tuple(int(s) for s in cfg.input_shape), int(cfg.num_classes)
    else:
        datamodule = instantiate(cfg.dataset)
        shape, num_classes = tuple(datamodule.input_shape), datamodule.num_classes
    if len(shape) != 3:
        raise ValueError(f"input_shape must be [C, H, W], got {list(shape)}")
    space = instantiate(
        cfg.space, in_channels=shape[0], num_classes=num_classes, input_size=(shape[1], shape[2])
    )
    needed = ("latency_specs", "fixed_specs", "single_path", "sample_choice")
    lacking = [m for m in needed if not hasattr(space, m)]
    if lacking:
        raise ValueError(
            f"space {type(space).__name__} lacks {lacking}: latency models need a "
            f"space with {list(needed)}, e.g. space=mobilenet"
        )
    return space, shape


def timing_settings(cfg: DictConfig) -> dict[str, Any]:
    return {
        "device": cfg.device,
        "warmup": cfg.warmup,
        "repeats": cfg.repeats,
        "rounds": cfg.rounds,
        "threads": cfg.threads,
        "channels_last": cfg.channels_last,
        "clock": cfg.clock,
    }


def run_command(cfg: DictConfig, command_line: str | None = None) -> dict[str, Any]:
    """Run ``cfg.command`` on the space of ``cfg``; returns the command's summary."""
    from nas_lightning.latency import commands
    from nas_lightning.latency.check import run_check

    if cfg.command not in COMMANDS:
        raise ValueError(f"unknown command {cfg.command!r}; valid: {', '.join(COMMANDS)}")
    space, shape = build_space(cfg)
    out = cfg.out if cfg.get("out") is not None else DEFAULT_OUT[cfg.command]
    common = {"batch_size": cfg.batch_size, "timing": timing_settings(cfg)}
    calibration = {"calibrate_n": cfg.calibrate, "terms": list(cfg.calibrate_terms)}
    meta = {
        "space": type(space).__name__,
        "command": command_line,
        "space_config": OmegaConf.to_container(cfg.space, resolve=True),
    }
    if cfg.command == "profile":
        return commands.profile(
            space, shape, out, seed=cfg.seed, meta=meta, **calibration, **common
        )
    if cfg.command == "fit":
        f = cfg.fit
        return commands.fit(
            space,
            shape,
            out,
            samples=cfg.samples,
            holdout=f.holdout,
            exact_fraction=f.exact_fraction,
            model=f.model,
            fit_kwargs={"alpha": f.alpha, "hidden": f.hidden, "steps": f.steps},
            seed=cfg.seed,
            meta=meta,
            **calibration,
            **common,
        )
    c = cfg.check
    return run_check(
        space,
        shape,
        out,
        architectures=c.architectures,
        seed=c.seed,
        lut=c.lut,
        predictor=c.predictor,
        ms_per_mflop=c.ms_per_mflop,
        recalibrate=c.recalibrate,
        recalibrate_seed=cfg.seed,
        spread=c.spread,
        **common,
    )


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)
def _main(cfg: DictConfig) -> None:
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("command=")]
    line = " ".join(["python -m nas_lightning.latency", cfg.command, *overrides])
    summary = run_command(cfg, line)
    log.info("%s done: %s", cfg.command, summary)
    print(json.dumps({"command": cfg.command, **summary}))


USAGE = (
    f"usage: python -m nas_lightning.latency {{{','.join(COMMANDS)}}} [hydra overrides]\n"
    "  profile  time every distinct op of the space: a latency LUT (out=lut.json)\n"
    "  fit      learn a latency predictor from timed ops (out=predictor.json)\n"
    "  check    rank sampled architectures by LUT/predictor against measured latency\n"
    "The overrides are the search's (space=mobilenet debug=tiny ...) plus device=cpu, out=...;\n"
    "'python -m nas_lightning.latency profile --help' lists every option."
)


def main(argv: list[str] | None = None) -> None:
    """Pop the subcommand from ``argv`` (default ``sys.argv``) and hand the rest to Hydra."""
    argv = sys.argv if argv is None else argv
    if len(argv) > 1 and argv[1] in ("-h", "--help"):
        print(USAGE)
        sys.exit(0)
    if len(argv) < 2 or argv[1] not in COMMANDS:
        got = argv[1] if len(argv) > 1 else "nothing"
        print(
            f"{USAGE}\nexpected a command first, got {got!r}; valid: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        sys.exit(2)
    from nas_lightning.runtime.rundir import register_resolvers

    register_resolvers()  # the run directory of conf/hydra/default.yaml
    sys.argv = [argv[0], *argv[2:], f"command={argv[1]}"]
    _main()


if __name__ == "__main__":
    main()
