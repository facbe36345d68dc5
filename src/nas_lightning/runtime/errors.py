"""One line per failure: what was wrong, the value, and what to do.

``RunError`` carries a message that is already that line. Any other exception is reduced to
one line by :func:`one_line`: known failures of libraries (W&B without a key, …) are
translated, config-instantiation wrappers are unwrapped to their cause, and anything else
keeps its type and first line. The full traceback goes to the run's log file only.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_CHARS = 400


class RunError(Exception):
    """A user-facing failure whose message is the one line to show."""


class ConfigError(RunError, ValueError):
    """A setting that cannot work (named with its value and the fix)."""


def _wandb_without_key(exc: BaseException) -> str | None:
    if type(exc).__module__.startswith("wandb") and "api key" in str(exc).lower():
        return (
            "logger=wandb found no W&B API key (WANDB_API_KEY is unset and `wandb login` was "
            "never run): log offline with logger.offline=true (sync later with `wandb sync`), "
            "or run `wandb login` first"
        )
    return None


TRANSLATORS: list[Callable[[BaseException], str | None]] = [_wandb_without_key]


def root_cause(exc: BaseException) -> BaseException:
    """Unwrap Hydra's ``InstantiationException`` (its message is a multi-line dump of the
    target and the cause) down to the exception that was actually raised."""
    while type(exc).__name__ == "InstantiationException" and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def one_line(exc: BaseException) -> str:
    """The single line to show for ``exc`` (a foreign message cut at ``MAX_CHARS``)."""
    exc = root_cause(exc)
    for translate in TRANSLATORS:
        message = translate(exc)
        if message:
            return message
    text = " ".join(str(exc).split("\n")[0].split()) or "(no message)"
    if isinstance(exc, RunError):  # ours: already the line, its advice at the end
        return text
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


def log_to_files(logger: logging.Logger, message: str, exc: BaseException | None = None) -> None:
    """Write ``message`` (and ``exc``'s full traceback) to the file handlers only: the console
    shows the one line."""
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, None, exc_info)
    for handler in _file_handlers(logger):
        if record.levelno >= handler.level:
            handler.handle(record)


def _file_handlers(logger: logging.Logger) -> list[logging.FileHandler]:
    found: list[logging.FileHandler] = []
    current: Any = logger
    while current is not None:
        found += [h for h in current.handlers if isinstance(h, logging.FileHandler)]
        current = current.parent if current.propagate else None
    return found


def log_files(logger: logging.Logger) -> list[Path]:
    """The files the run's log goes to (``search.log`` under Hydra)."""
    return [Path(h.baseFilename) for h in _file_handlers(logger)]


def format_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
