"""A callback that kills its own process (SIGKILL or another signal) at a given epoch and batch.

Used by the resume and signal tests through ``+callbacks.kill._target_=tests.kill_callback.KillAt``.
"""

from __future__ import annotations

import os
import signal
import time

import pytorch_lightning as pl


class KillAt(pl.Callback):
    """Send ``signum`` to this process at the start of training batch ``batch`` of epoch ``epoch``.

    ``signum="mark"`` only prints a marker there and then slows every later batch by ``delay`` seconds,
    so that a test can send a signal from outside while the run is inside that epoch.
    """

    def __init__(self, epoch: int, batch: int, signum: str = "SIGKILL", delay: float = 0.5) -> None:
        self.epoch, self.batch, self.signum, self.delay = epoch, batch, signum, delay
        self.marked = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.marked:
            time.sleep(self.delay)
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            print(f"KillAt: {self.signum} at epoch {self.epoch} batch {batch_idx}", flush=True)
            if self.signum == "mark":
                self.marked = True
            else:
                os.kill(os.getpid(), getattr(signal, self.signum))
