"""At the end of training, render the held-out frames side by side with the ground truth as an MP4."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from src.core.outputs import Batch
from src.utils.io import to_uint8
from src.utils.signals import check_stop
from src.utils.video import write_video

log = logging.getLogger(__name__)


class HeldoutVideoCallback(pl.Callback):
    """Writes ``<log dir>/videos/heldout.mp4`` (prediction | ground truth) after fit and logs it to wandb.

    Args:
        split: which split of the data module to render (default the validation frames).
        max_frames: at most this many frames.
        fps: frame rate of the video.
    """

    def __init__(self, split: str = "val", max_frames: int = 64, fps: float = 25.0) -> None:
        self.split, self.max_frames, self.fps = split, max_frames, fps

    @torch.no_grad()
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not hasattr(pl_module, "predict_frames"):
            return
        dm = trainer.datamodule
        ds = dm.datasets.get(self.split) if dm is not None else None
        if ds is None or len(ds) == 0:
            return
        was_training = pl_module.training
        pl_module.eval()
        frames = []
        for k in range(min(len(ds), self.max_frames)):
            check_stop("held-out video")
            item = ds[k]
            pred = pl_module.predict_frames(item[Batch.INDEX][None].to(pl_module.device))[0].cpu()
            pair = torch.cat([pred, item[Batch.IMAGE]], dim=2).clamp(0, 1)
            frames.append(to_uint8(pair.permute(1, 2, 0)))
        pl_module.train(was_training)
        path = write_video(
            Path(trainer.default_root_dir) / "videos" / f"{self.split}.mp4", np.stack(frames), self.fps
        )
        log.info("wrote %s", path)
        for logger in trainer.loggers:
            if hasattr(logger, "log_video"):
                logger.log_video(key=f"{self.split}/video", videos=[str(path)], step=trainer.global_step)
