"""Shared LightningModule plumbing of the avatar families: frame parameters, checkpoints, metrics."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from src.metrics.suite import ImageMetrics
from src.models.avatar import AvatarMixin
from src.models.frame_params import FrameParams
from src.utils.config import to_plain


class AvatarModule(AvatarMixin, pl.LightningModule):
    """Base of avatar LightningModules.

    Holds the subject's per-frame parameters (``self.frames``, loaded from the data module at set-up and
    restored from checkpoints), the image size, and val/test :class:`ImageMetrics` logged as
    ``val/psnr`` etc. Checkpoints also store the model class and the data config, so that
    :func:`src.models.loading.load_avatar` can rebuild both.

    Subclasses implement ``forward(index, soft_alpha=...) -> dict(image, ...)`` and may override
    :meth:`on_frames_ready` to size per-frame tensors.
    """

    def __init__(self, metrics: dict[str, Any]) -> None:
        super().__init__()
        self.frames = FrameParams()
        self.val_metrics = ImageMetrics(**metrics)
        self.test_metrics = ImageMetrics(**metrics)
        self.image_size: tuple[int, int] | None = None

    def on_frames_ready(self, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Called once the frame parameters are known (set-up) or about to be restored (checkpoint)."""

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        self.image_size = tuple(dm.image_size)
        if self.frames.n_frames == 0:
            params = dm.params()
            self.headmodel.check_frame_params(params)  # one line when they were fitted with another model
            self.frames.load(params)
            self.on_frames_ready()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.frames.prepare_for_state_dict(checkpoint["state_dict"], "frames.")
        self.image_size = tuple(checkpoint.get("image_size") or self.image_size or (0, 0))
        self.on_frames_ready(checkpoint["state_dict"])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["image_size"] = list(self.image_size) if self.image_size else None
        checkpoint["model_target"] = f"{type(self).__module__}.{type(self).__qualname__}"
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "config"):
            checkpoint["data_config"] = dm.config()
        # plain containers only, so checkpoints load with torch.load(weights_only=True)
        checkpoint["hyper_parameters"] = to_plain(checkpoint.get("hyper_parameters", {}))

    @torch.no_grad()
    def predict_frames(self, index: torch.Tensor) -> torch.Tensor:
        """Images of frames ``index`` (B,) as (B,3,H,W) in [0,1] (the interface evaluate/reenact use)."""
        return self(index, soft_alpha=False)["image"].clamp(0, 1)

    def _log_metrics(self, stage: str, metrics: ImageMetrics) -> None:
        values = metrics.compute()
        scores = {
            f"{stage}/{k}": float(v) for k, v in values.items() if _is_number(v) and not k.startswith("num_")
        }
        self.log_dict(scores, sync_dist=True)
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) or (torch.is_tensor(v) and v.numel() == 1)
