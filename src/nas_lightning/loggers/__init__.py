"""Loggers that suit a resumable search."""

from nas_lightning.loggers.csv import AppendingCSVLogger

__all__ = ["AppendingCSVLogger"]
