"""Stop a Lightning run at the next batch after SIGTERM/SIGINT/SLURM's requeue signal."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from src.utils.signals import check_stop, install, reset


class StopOnSignal(pl.Callback):
    """Check :mod:`src.utils.signals`' stop flag before every train/val/test/predict batch.

    The run then stops with :class:`src.utils.signals.StopRequestedError` (Lightning tears down, the task
    wrapper finishes the loggers, the process exits non-zero). Nothing is written mid-epoch: the resume
    point is ``checkpoints/last.ckpt`` of the last finished epoch, so a resumed run (``ckpt_path=last``)
    repeats the interrupted epoch exactly as an uninterrupted run would have run it (see
    :class:`src.callbacks.determinism.EpochSeed`). A run driven without the task wrapper (tests,
    notebooks) has no handlers yet: they are installed at set-up and given back at teardown.
    """

    def __init__(self) -> None:
        self._installed = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._installed = install() or self._installed

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._installed:
            reset()
            self._installed = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:  # fmt: skip
        check_stop(f"training (epoch {trainer.current_epoch}, batch {batch_idx})")

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        check_stop("validation")

    def on_test_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                            batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        check_stop("test")

    def on_predict_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                               batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        check_stop("prediction")
