"""What the console and search.log show: one line per epoch (the history a redrawn progress
bar loses), and usage for ``python -m nas_lightning.latency --help``."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from run_helpers import TINY, cli, run_dirs

from nas_lightning.latency.__main__ import main as latency_main

LINE = re.compile(
    r"epoch (\d+)/2  train/loss ([\d.]+)  train/acc ([\d.]+)  val/loss ([\d.]+)  "
    r"val/acc ([\d.]+)  arch/entropy ([\d.]+)  skip_connect (\d+)  lr ([\d.e-]+)"
)


def test_one_log_line_per_epoch_with_the_search_state(tmp_path, one_thread):
    logs = tmp_path / "outputs"
    assert cli(*TINY, "trainer.max_epochs=2", "logger=csv", f"paths.log_dir={logs}") == 0
    (run,) = run_dirs(logs)
    lines = [m.groups() for m in LINE.finditer((run / "search.log").read_text())]
    assert [int(g[0]) for g in lines] == [1, 2]
    rows = list(csv.DictReader(io.StringIO((run / "csv" / "metrics.csv").read_text())))
    history = [json.loads(x) for x in (run / "genotypes.jsonl").read_text().splitlines()]
    for (_, loss, _, _, val_acc, entropy, skips, _), epoch in zip(lines, (0, 1), strict=True):
        row = next(r for r in rows if r["epoch"] == str(epoch) and r.get("train/loss"))
        assert float(loss) == pytest.approx(float(row["train/loss"]), abs=1e-4)
        val = next(r for r in rows if r["epoch"] == str(epoch) and r.get("val/acc"))
        assert float(val_acc) == pytest.approx(float(val["val/acc"]), abs=1e-4)
        ent = next(r for r in rows if r["epoch"] == str(epoch) and r.get("arch/entropy"))
        assert float(entropy) == pytest.approx(float(ent["arch/entropy"]), abs=1e-4)
        ops = [
            op
            for op, _ in history[epoch]["genotype"]["normal"] + history[epoch]["genotype"]["reduce"]
        ]
        assert int(skips) == ops.count("skip_connect")


def test_latency_cli_help_prints_usage(capsys):
    with pytest.raises(SystemExit) as exit_:
        latency_main(["nas_lightning.latency", "--help"])
    out = capsys.readouterr()
    assert exit_.value.code == 0
    assert out.out.startswith("usage: python -m nas_lightning.latency {profile,fit,check}")
    assert "expected a command first" not in out.out + out.err
