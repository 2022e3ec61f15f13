"""Every training epoch starts from random state fixed by (seed, epoch): resumed runs repeat exactly.

Lightning restores weights, optimisers, schedulers and loop counters from a checkpoint, but not the global
torch / numpy / Python random state nor, therefore, the order a shuffling sampler draws (it seeds itself
from the global torch generator when the epoch's iterator is created, after ``on_train_epoch_start``). A run
resumed from the ``last.ckpt`` of epoch e-1 would draw a different data order and different noise in epoch e
than the uninterrupted run did. Re-seeding all generators at the start of every epoch from ``seed + epoch``
makes each epoch's randomness independent of what happened before it in the process (validation, a
restart), so a run killed mid-epoch and resumed ends where the uninterrupted one does.
"""

from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch


def seed_all(seed: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and every CUDA device) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class EpochSeed(pl.Callback):
    """Re-seed the global generators with ``seed + 1000 * epoch + rank`` at the start of every training epoch.

    Args:
        seed: the run's seed (``${seed}``); None turns the callback off.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.seed is not None:
            seed_all(int(self.seed) + 1000 * trainer.current_epoch + trainer.global_rank)
