"""What the console shows: Lightning's messages once, through the run's own handlers."""

from __future__ import annotations

import logging

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


def route_lightning_logging() -> None:
    """Lightning gives its ``lightning`` logger a console handler of its own (``INFO: …``), so
    under Hydra — whose root handlers print to the console and write ``search.log`` — every
    Lightning line was printed twice. When the root logger has handlers, drop Lightning's
    console handlers and let its records propagate to the root: printed once, and logged to
    the run's file as well."""
    if not logging.getLogger().handlers:
        return  # no root handlers (a notebook): keep Lightning's own
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True
