"""A callback that kills its own process with SIGKILL at a given global step: a crash with no
chance to save anything, mid-epoch (used by the resume round-trip test in a subprocess)."""

import os
import signal

import lightning.pytorch as pl


class KillAtStep(pl.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
