"""``last.ckpt`` written after every training epoch, atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl


class LastCheckpoint(pl.Callback):
    """Keep ``<dirpath>/<filename>`` the state of the latest finished training epoch.

    Lightning's ``ModelCheckpoint(save_last=True)`` only refreshes ``last.ckpt`` when it also saves a top-k
    checkpoint, so an epoch whose validation score did not improve would leave an older ``last.ckpt``
    behind (a resume would redo epochs; evaluate/reenact would load stale weights). This callback writes
    it every epoch, to a temporary file first that then replaces the old one, so an interrupted write never
    leaves a broken ``last.ckpt``.

    Args:
        dirpath: checkpoint folder (usually ``${paths.output_dir}/checkpoints``).
        filename: file name inside it.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp)
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
