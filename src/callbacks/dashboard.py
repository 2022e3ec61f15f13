"""Dashboard callbacks: FID on validation every N epochs, ground-truth geometry errors on test."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch

from src.models.loading import geometry_scores

log = logging.getLogger(__name__)


class FIDSchedule(pl.Callback):
    """Compute validation FID only every ``val_every_n_epochs`` epochs (and on the last epoch).

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
        return (epoch + 1) % self.every == 0 or last

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = getattr(pl_module, "val_metrics", None)
        if metrics is not None and hasattr(metrics, "pause"):
            metrics.pause("fid", not self._due(trainer))


class TestGeometry(pl.Callback):
    """Log ``test/geometry_{mean,hausdorff,aligned_mean}_mm`` (face region) where ground truth exists.

    Uses :func:`src.models.loading.geometry_scores` (the same numbers evaluate.py reports); subjects
    without ``ground_truth/vertices.npy`` and models without posed vertices log nothing.
    """

    @torch.no_grad()
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "splits") or not hasattr(pl_module, "posed_vertices"):
            return
        scores = geometry_scores(pl_module, dm, "test")
        if scores:
            pl_module.log_dict({f"test/{k}": v for k, v in scores.items()}, sync_dist=False)
