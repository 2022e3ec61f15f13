"""Dashboard callbacks: FID on validation every N epochs.

Ground-truth geometry errors need no callback: every val/test batch is scored through
:class:`src.models.scoring.SplitScores`, which logs ``{val,test}/geometry_*_mm`` where ground truth exists.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class FIDSchedule(pl.Callback):
    """Compute validation FID only every ``val_every_n_epochs`` epochs (and on the last epoch, or once a
    ``trainer.max_steps`` budget is reached).

    FID (InceptionV3 over every validation frame, predicted and real, unmasked and masked) costs several
    times the other metrics on CPU; test FID always runs when ``metrics.fid`` is true. Epochs without it
    log no ``val/fid`` (the dashboard shows the points it has). ``val_every_n_epochs: 0`` turns validation
    FID off.

    Args:
        val_every_n_epochs: compute ``val/fid`` on epochs ``N-1, 2N-1, ...`` (0-based) and the last one.
    """

    def __init__(self, val_every_n_epochs: int = 5) -> None:
        self.every = int(val_every_n_epochs)

    def _due(self, trainer: pl.Trainer) -> bool:
        if self.every <= 0 or trainer.sanity_checking:
            return False
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
        max_steps = getattr(trainer, "max_steps", -1)
        last = last or (max_steps not in (None, -1) and trainer.global_step >= max_steps)  # a step budget
        return (epoch + 1) % self.every == 0 or last

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        scores = getattr(pl_module, "val_scores", None)
        metrics = getattr(scores, "images", None)
        if metrics is not None and hasattr(metrics, "pause"):
            metrics.pause("fid", not self._due(trainer))
