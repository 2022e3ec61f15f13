"""A selfie video as training data: preprocessing and tracking run once in ``prepare_data`` (cached).

It lives in src.tracking because it runs preprocess and tracking (a data module below them could not).

``python train.py experiment=baseline_video data.path=me.mp4`` preprocesses the video into
``${paths.data_dir}/videos/<stem>`` (frames, masks, segmentation, landmarks; see docs/video.md), fits the
head model (tracking.npz), then trains on the result like on any subject layout. A second run with the
same video and settings reuses the folder; other settings redo only the stages they change.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra

from src.core.layout import LayoutError
from src.datamodules.avatar_datamodule import AvatarDataModule
from src.preprocess.pipeline import planned_hash, preprocess_video
from src.tracking.run import planned_tracking_hash, track_subject
from src.utils.config import to_plain

log = logging.getLogger(__name__)


def _absolute(path: str | Path) -> Path:
    """A user path relative to the directory the command was started in (Hydra-aware)."""
    try:
        return Path(hydra.utils.to_absolute_path(str(path)))
    except ValueError:  # Hydra not initialised (plain Python use)
        return Path(path).resolve()


class VideoDataModule(AvatarDataModule):
    """:class:`AvatarDataModule` over a video's subject layout, which ``prepare_data`` builds.

    Args:
        path: the video file (mp4, mov, webm, ...).
        root: subject folder; default ``cache_dir/<video file stem>_<crop resolution>px``, so crops of
            several resolutions (the mesh avatar's 256 px, the image avatar's 128 px) are cached side by side.
        cache_dir: parent of the default subject folder.
        preprocess: preprocessing options (conf/preprocess/default.yaml).
        tracking: tracking options (conf/tracking/default.yaml).
        headmodel: head-model config, instantiated for tracking (ICT by default, FLAME if configured).
        params_source: which parameters models train on; "tracking" for videos.
        generator: must be None (videos are not generated; accepted for :meth:`config` round trips).
        **kwargs: the remaining :class:`AvatarDataModule` arguments (batch_size, splits, workers).
    """

    def __init__(
        self,
        path: str,
        root: str | None = None,
        cache_dir: str = "data/videos",
        preprocess: dict[str, Any] | None = None,
        tracking: dict[str, Any] | None = None,
        headmodel: dict[str, Any] | None = None,
        params_source: str = "tracking",
        generator: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if generator is not None:
            raise ValueError(
                "VideoDataModule takes no generator; use data=synthetic for the synthetic subject"
            )
        self.path = _absolute(path)
        self.cache_dir = str(cache_dir)
        self.preprocess_cfg = to_plain(preprocess) or {}
        res = int(self.preprocess_cfg.get("resolution", 256))
        root = root or str(Path(cache_dir) / f"{self.path.stem}_{res}px")
        super().__init__(root=root, headmodel=headmodel, params_source=params_source, **kwargs)
        self.tracking_cfg = to_plain(tracking) or {}

    def prepare_data(self) -> None:
        """Preprocess and track the video unless a cached result with the same settings exists."""
        if self.headmodel_cfg is None:
            raise LayoutError(
                "data.headmodel is not set; tracking needs it (headmodel=ict or headmodel=flame)"
            )
        if (self.data_hashes or {}).get("data") and self.path.is_file():  # a missing video: preprocess says
            self.check_hash("data", planned_hash(self.path, self.preprocess_cfg), self.path.name)
        preprocess_video(self.path, self.root, self.preprocess_cfg)
        headmodel = hydra.utils.instantiate(self.headmodel_cfg)
        if (self.data_hashes or {}).get("tracking"):
            digest = planned_tracking_hash(self.root, headmodel, self.tracking_cfg)
            self.check_hash("tracking", digest, self.path.name)
        want_wandb = bool(self.tracking_cfg.get("log_wandb", True))
        track_subject(self.root, headmodel, {**self.tracking_cfg, "log_wandb": False})
        if want_wandb:
            self._log_overlay()

    def _log_overlay(self) -> None:
        """Send overlays/tracking.mp4 to the trainer's wandb logger, if it has one."""
        video = self.root / "overlays" / "tracking.mp4"
        trainer = getattr(self, "trainer", None)
        if trainer is None or not video.exists():
            return
        for lg in trainer.loggers:
            if type(lg).__name__ == "WandbLogger":
                import wandb

                lg.experiment.log({"tracking/overlay": wandb.Video(str(video), format="mp4")})

    def setup(self, stage: str | None = None) -> None:
        """As :meth:`AvatarDataModule.setup`, and say which items this video lacks (once)."""
        first = self.meta is None
        super().setup(stage)
        if first and self.meta.get("absent"):
            for item, why in self.meta["absent"].items():
                if item not in ("masks", "segmentation", "normals"):
                    continue
                log.warning(
                    "%s: no %s for this video (%s); losses that need it must be off for this data",
                    self.root.name, item, why,
                )  # fmt: skip

    def config(self) -> dict[str, Any]:
        """A plain config that rebuilds this data module (for checkpoints)."""
        cfg = super().config()
        cfg.pop("generator", None)
        cfg.update(path=str(self.path), cache_dir=self.cache_dir, preprocess=self.preprocess_cfg,
                   tracking=self.tracking_cfg)  # fmt: skip
        return cfg
