"""``python -m nas_lightning.report``: a multirun directory made here in the files' real formats
(Lightning's metrics.csv, genotype.json, status.json, result.json, .hydra/overrides.yaml),
with one failed job."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from omegaconf import OmegaConf

from nas_lightning.genotype import BlockGenotype, save_genotype
from nas_lightning.report import final_metrics, pareto_front
from nas_lightning.report.__main__ import main
from nas_lightning.runtime.status import write_status

COMMON = ["experiment=latency_pareto", "paths.log_dir=/tmp/x"]
HEADER = "arch/entropy,arch/expected_latency_ms,epoch,step,train/loss,val/acc,val/loss"


def fake_job(
    sweep: Path,
    num: int,
    weight: float,
    acc: float | None,
    lat: float | None,
    status: str = "completed",
    result: dict | None = None,
) -> Path:
    """A job directory as a search (and, with ``result``, a retrain) leaves it."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(
        OmegaConf.create([*COMMON, f"algo.latency_weight={weight}"]), job / ".hydra/overrides.yaml"
    )
    write_status(
        job, status, "algo.target_ms=0.0001 is unreachable" if status == "failed" else None
    )
    if status == "failed":
        return job
    (job / "csv").mkdir()
    # Lightning's layout: validation and training rows of an epoch are separate, blanks between
    rows = [
        HEADER,
        ",,0,13,,0.5,1.2",
        f"1.85,{lat * 1.2},0,13,1.4,,",
        f",,1,27,,{acc},0.3",
        f"1.80,{lat},1,27,0.4,,",
    ]
    (job / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
    save_genotype(
        BlockGenotype(blocks=["mbconv_k3_e3", "zero"], labels=["b0", "b1"]), job / "genotype.json"
    )
    if result is not None:
        (job / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return job


def read_report(path: Path) -> dict[str, dict[str, str]]:
    return {row["job"]: row for row in csv.DictReader(open(path))}


def test_final_metrics_are_the_last_value_of_each_column(tmp_path):
    job = fake_job(tmp_path, 0, 0.0, acc=0.9, lat=2.0)
    metrics = final_metrics(job / "csv" / "metrics.csv")
    assert metrics["val/acc"] == 0.9 and metrics["arch/expected_latency_ms"] == 2.0
    assert metrics["train/loss"] == 0.4 and metrics["epoch"] == 1.0


def test_pareto_front_keeps_the_non_dominated_points():
    #          0: front      1: dominated by 0  2: front (fastest)  3: tie with 0   4: front
    points = [(0.95, 2.0), (0.94, 2.5), (0.90, 1.0), (0.95, 2.0), (0.97, 3.0)]
    assert pareto_front(points) == [2, 0, 3, 4]


def test_report_of_a_search_sweep_with_a_failed_job(tmp_path, capsys):
    sweep = tmp_path / "multiruns" / "2026-01-02_03-04-05"
    fake_job(sweep, 0, 0.0, acc=0.96, lat=2.0)
    fake_job(sweep, 1, 30.0, acc=0.95, lat=1.6)
    fake_job(sweep, 2, 100.0, acc=0.94, lat=1.8)  # dominated by job 1
    fake_job(sweep, 3, 300.0, acc=None, lat=None, status="failed")
    fake_job(sweep, 10, 1000.0, acc=0.90, lat=1.1)
    assert main([str(sweep)]) == 0
    rows = read_report(sweep / "report.csv")
    assert list(rows) == ["0", "1", "2", "3", "10"]  # job order, not string order
    assert {j: rows[j]["pareto"] for j in rows} == {
        "0": "true",
        "1": "true",
        "2": "false",
        "3": "",  # failed: not a point
        "10": "true",
    }
    failed = rows["3"]
    assert (
        failed["status"] == "failed" and failed["error"] == "algo.target_ms=0.0001 is unreachable"
    )
    assert failed["val_acc"] == "" and failed["genotype"] == ""
    assert rows["1"]["varying"] == "algo.latency_weight=30.0"  # shared overrides left out
    assert float(rows["1"]["val_acc"]) == 0.95 and float(rows["1"]["expected_latency_ms"]) == 1.6
    assert rows["0"]["genotype"] == "BlockGenotype(b0=mbconv_k3_e3, b1=zero)"
    assert rows["0"]["metric:train/loss"] == "0.4" and rows["0"]["test_acc"] == ""
    out = capsys.readouterr().out
    assert "FAILED" in out and "5 job(s), 1 failed" in out
    assert (sweep / "pareto.png").stat().st_size > 10_000


def test_retrained_jobs_put_test_accuracy_and_measured_latency_on_the_front(tmp_path):
    sweep = tmp_path / "sweep"
    # by the search numbers job 0 dominates job 1; measured after retraining it does not
    for num, acc, lat, test_acc, measured in ((0, 0.97, 1.0, 0.95, 5.0), (1, 0.96, 2.0, 0.94, 4.0)):
        result = {"test_acc": test_acc, "latency_ms": measured, "params_M": 0.2, "macs_M": 2.1}
        fake_job(sweep, num, float(num), acc=acc, lat=lat, result=result)
    fake_job(sweep, 2, 3.0, acc=None, lat=None, status="failed")
    out = tmp_path / "report"
    assert main([str(sweep), "--out", str(out)]) == 0
    rows = read_report(out / "report.csv")
    assert [rows[j]["pareto"] for j in ("0", "1", "2")] == ["true", "true", ""]
    assert float(rows["1"]["test_acc"]) == 0.94 and float(rows["1"]["latency_ms"]) == 4.0
    assert (out / "pareto.png").is_file() and not (sweep / "report.csv").exists()


def test_a_directory_without_jobs_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: no job directories") and "multiruns/<date>_<time>" in err
