"""A CSV logger that appends, so a resumed run keeps one ``metrics.csv``.

Lightning 2.6's ``CSVLogger`` deletes an existing ``metrics.csv`` when its directory is not
empty ("Previous log files in this directory will be deleted"), and starts its header from
scratch. Here an existing file is kept: its header seeds the known columns, new rows are
appended, and a new column rewrites the file once with the union header (Lightning's own
rewrite). ``runtime.resume.trim_history`` has already dropped rows of epochs after the
checkpoint.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class AppendingExperimentWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = list(next(csv.reader(f), []))


class AppendingCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume into the same directory."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
