"""Log prediction | ground truth | error grids of the first validation and test batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from src.core.outputs import Batch, Out
from src.utils.io import to_uint8, write_png


def make_grid(rows: list[torch.Tensor], max_images: int) -> np.ndarray:
    """Stack image batches into one uint8 picture: one row per image, one column per entry of ``rows``.

    Args:
        rows: tensors (B,3,H,W) in [0,1] (same B, H, W).
        max_images: at most this many images (rows of the picture).

    Returns:
        (n*H, len(rows)*W, 3) uint8.
    """
    n = min(max_images, rows[0].shape[0])
    cols = [torch.cat([r[i] for r in rows], dim=2) for i in range(n)]  # each (3,H,k*W)
    grid = torch.cat(cols, dim=1).clamp(0, 1)
    return to_uint8(grid.permute(1, 2, 0))


class ImageGridCallback(pl.Callback):
    """First batch of each validation epoch and of the test: prediction | ground truth | 4x abs error |
    normals | mesh overlay.

    Reads the outputs ``validation_step`` / ``test_step`` return (keys of :class:`src.core.outputs.Out`):
    ``Out.IMAGE`` (B,3,H,W) the prediction in [0,1], and optionally ``Out.NORMALS`` (B,3,H,W) in [-1,1]
    (mesh avatars) or ``Out.CONDITION`` (B,3,H,W) in [0,1], the head-model render an image avatar is
    conditioned on (shown with an overlay on the ground truth too); the ground truth is the batch's
    ``Batch.IMAGE``. Writes ``<log dir>/images/val_epoch_XXX.png`` / ``test.png`` and, for loggers with
    ``log_image`` (wandb), logs it as ``val/images`` / ``test/images``.
    """

    def __init__(self, max_images: int = 4) -> None:
        self.max_images = max_images

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if not trainer.sanity_checking:
            name = f"val_epoch_{trainer.current_epoch:03d}"
            self._log_grid(trainer, outputs, batch, batch_idx, "val", name)

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self._log_grid(trainer, outputs, batch, batch_idx, "test", "test")

    def _log_grid(
        self, trainer: pl.Trainer, outputs: Any, batch: Any, batch_idx: int, split: str, name: str
    ) -> None:
        if batch_idx != 0 or not isinstance(outputs, dict) or Out.IMAGE not in outputs:
            return
        pred, target = outputs[Out.IMAGE].float(), batch[Batch.IMAGE].float()
        rows = [pred, target, ((pred - target).abs() * 4).clamp(0, 1)]
        if Out.NORMALS in outputs:
            normals = outputs[Out.NORMALS].float()
            fg = (normals.abs().sum(1, keepdim=True) > 0).float()
            shaded = (normals + 1) / 2 * fg
            rows.append(shaded)
            rows.append(target * (1 - 0.6 * fg) + 0.6 * shaded)  # mesh overlaid on the ground truth
        elif Out.CONDITION in outputs:
            render = outputs[Out.CONDITION].float()
            fg = (render.sum(1, keepdim=True) > 0).float()
            rows += [render, target * (1 - 0.6 * fg) + 0.6 * render]
        grid = make_grid(rows, self.max_images)
        if trainer.is_global_zero:
            write_png(Path(trainer.default_root_dir) / "images" / f"{name}.png", grid)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key=f"{split}/images", images=[grid], step=trainer.global_step)
