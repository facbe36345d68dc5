"""SIGTERM (a scheduler's stop): the checkpoint is saved, the process exits 143, and the log
gives the exact command that resumes the run — which then continues in the same directory."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
from run_helpers import epochs_in, run_dirs, status

OVERRIDES = ["debug=tiny", "trainer.max_epochs=40", "trainer.enable_progress_bar=false", "seed=9"]


@pytest.mark.slow
def test_sigterm_exits_143_with_a_resume_command_that_works(tmp_path):
    logs = tmp_path / "outputs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "nas_lightning", *OVERRIDES, f"paths.log_dir={logs}"]
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 600
    while not list(logs.glob("search/runs/*/checkpoints/last.ckpt")):  # an epoch is done
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 143, err[-2000:]
    (run,) = run_dirs(logs)
    ckpt = (run / "checkpoints" / "last.ckpt").resolve()
    command = " ".join(["python -m nas_lightning", *OVERRIDES, f"paths.log_dir={logs}"])
    line = (
        f"Interrupted by SIGTERM (exit 143); checkpoint saved to {ckpt}. "
        f"The run can be resumed with: {command} ckpt_path={ckpt}"
    )
    assert err.strip().splitlines()[-1] == line
    assert status(run) == {"status": "interrupted", "error": line, "exit_code": 143}
    assert line in (run / "search.log").read_text()
    # Lightning's INFO lines are printed once (not also by its own handler)
    assert (out + err).count("Seed set to 9") == 1

    # the printed command (horizon shortened to 3 epochs) continues in the same directory
    resume = shlex.split(line.split("resumed with: ")[1].replace("max_epochs=40", "max_epochs=3"))
    done = subprocess.run(
        [sys.executable, *resume[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert run_dirs(logs) == [run] and status(run)["status"] == "completed"
    assert epochs_in(run) == [0, 1, 2]
    assert f"in the same run directory {run.resolve()}" in (run / "search.log").read_text()
