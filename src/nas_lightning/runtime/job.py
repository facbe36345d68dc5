"""One search job with a recorded outcome: ``status.json``, one line on failure, the full
traceback in the run's log file, a resume command after SIGTERM.

``run_guarded`` never lets an exception reach Hydra (which would print a long traceback);
``__main__`` turns the outcome into the exit code (1 failed, 143 SIGTERM) — in a multirun a
failed job is recorded and the sweep goes on.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities.exceptions import SIGTERMException

from nas_lightning.runtime.errors import format_traceback, log_files, log_to_files
from nas_lightning.runtime.errors import one_line as describe
from nas_lightning.runtime.status import write_status

log = logging.getLogger("nas_lightning.run")
SIGTERM_EXIT = 143  # 128 + SIGTERM, what a shell reports for a process killed by SIGTERM


@dataclass
class JobContext:
    run_dir: Path
    overrides: list[str] = field(default_factory=list)  # this job's overrides, as typed
    multirun: bool = False
    program: str = "python -m nas_lightning"


@dataclass
class JobOutcome:
    status: str
    exit_code: int
    result: Any = None
    error: str | None = None


def override(key: str, value: Any) -> str:
    """``key=value`` as a Hydra override, quoted when the value has special characters."""
    text = str(value)
    if re.fullmatch(r"[\w/.\-:+~]+", text):
        return f"{key}={text}"
    return f"{key}='" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def resume_command(ctx: JobContext, ckpt: Path) -> str:
    kept = [o for o in ctx.overrides if not re.match(r"^\+*ckpt_path=", o)]
    args = [*kept, override("ckpt_path", ckpt)]
    return " ".join([ctx.program, *(shlex.quote(a) for a in args)])


def _report(line: str, exc: BaseException | None = None) -> None:
    """The one line on stderr; line and traceback in the log file; the traceback on the
    console only with HYDRA_FULL_ERROR=1."""
    log_to_files(log, line, exc)
    if exc is not None and os.environ.get("HYDRA_FULL_ERROR") == "1":
        print(format_traceback(exc), file=sys.stderr, end="")
    print(line, file=sys.stderr, flush=True)


def _interrupted(ctx: JobContext, reason: str, code: int) -> JobOutcome:
    ckpt = ctx.run_dir / "checkpoints" / "last.ckpt"
    if ckpt.is_file():
        line = (
            f"Interrupted by {reason} (exit {code}); checkpoint saved to {ckpt}. "
            f"The run can be resumed with: {resume_command(ctx, ckpt)}"
        )
    else:
        line = f"Interrupted by {reason} (exit {code}) before any checkpoint was saved"
    _report(line)
    write_status(ctx.run_dir, "interrupted", line, code)
    return JobOutcome("interrupted", code, error=line)


def run_guarded(fn: Callable[[], Any], ctx: JobContext) -> JobOutcome:
    """Call ``fn`` (the search), record how it ended in ``ctx.run_dir/status.json``."""
    write_status(ctx.run_dir, "running")
    try:
        result = fn()
    except SIGTERMException:
        return _interrupted(ctx, "SIGTERM", SIGTERM_EXIT)
    except KeyboardInterrupt:
        return _interrupted(ctx, "Ctrl+C", 130)
    except SystemExit as exc:  # Lightning turns Ctrl+C during fit into sys.exit(1)
        code = exc.code if isinstance(exc.code, int) else 1
        return _interrupted(ctx, f"exit {code}", code)
    except Exception as exc:  # every failure: one line, recorded
        where = ", ".join(str(p) for p in log_files(log)) or "no log file"
        line = f"Error: {describe(exc)} (traceback in {where})"
        _report(line, exc)
        write_status(ctx.run_dir, "failed", describe(exc), 1)
        return JobOutcome("failed", 1, error=describe(exc))
    write_status(ctx.run_dir, "completed", None, 0)
    return JobOutcome("completed", 0, result=result)
