"""What an avatar model is told about its subject before training: :class:`SubjectData`.

The entry point (train.py) prepares the data module, asks it for this object
(:meth:`src.datamodules.avatar_datamodule.AvatarDataModule.subject`) and hands it to the model
(:meth:`src.models.base_module.AvatarModule.attach`), as nerfstudio's pipeline hands ``num_train_data`` and
the scene's metadata to its model. Models never read the data module itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from src.core.layout import PARAM_KEYS

SPLITS = ("train", "val", "test")


class SubjectDataError(ValueError):
    """A :class:`SubjectData` is inconsistent; the message names the field."""


@dataclass(frozen=True)
class SubjectData:
    """The subject's per-frame head-model parameters, image size, splits and ground truth.

    Attributes:
        params: one tensor per :data:`src.core.layout.PARAM_KEYS`: identity (Ni,), expression (N,Ne),
            rotation (N,3), translation (N,3), joint_pose (N,Nj), K (3,3), R (3,3), t (3,).
        image_size: (H,W) of the frames in pixels.
        splits: {"train", "val", "test"} -> frame numbers of each split.
        gt_vertices: (N,V,3) float32 true posed vertices in metres, or None (real videos).
        fps: frame rate of the sequence (None when unknown).
        background: (3,H,W) float background plate in [0,1] in the first frame's pixels (a real video
            filmed with a still camera), or None.
        background_motion: (N,2,3) float affine maps from plate pixels to each frame's (camera shake, see
            :func:`src.core.streams.warp_plate`), or None (the plate as it is for every frame).
        root: the subject folder (for messages; models never read files from it).
    """

    params: Mapping[str, torch.Tensor]
    image_size: tuple[int, int]
    splits: Mapping[str, tuple[int, ...]]
    gt_vertices: torch.Tensor | None = None
    fps: float | None = None
    background: torch.Tensor | None = None
    background_motion: torch.Tensor | None = None
    root: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        missing = [k for k in PARAM_KEYS if k not in self.params]
        if missing:
            raise SubjectDataError(f"SubjectData.params lacks {missing}; give every key of PARAM_KEYS")
        params = {k: torch.as_tensor(self.params[k], dtype=torch.float32) for k in PARAM_KEYS}
        object.__setattr__(self, "params", params)
        h, w = (int(x) for x in self.image_size)
        if h <= 0 or w <= 0:
            raise SubjectDataError(f"SubjectData.image_size must be positive (H,W); got {self.image_size}")
        object.__setattr__(self, "image_size", (h, w))
        bad = set(self.splits) ^ set(SPLITS)
        if bad:
            raise SubjectDataError(
                f"SubjectData.splits must have exactly {SPLITS}; got {sorted(self.splits)}"
            )
        splits = {k: tuple(int(i) for i in self.splits[k]) for k in SPLITS}
        n = self.n_frames
        out = [i for ids in splits.values() for i in ids if not 0 <= i < n]
        if out:
            raise SubjectDataError(f"SubjectData.splits name frames {out[:5]} outside the {n} frames")
        object.__setattr__(self, "splits", splits)
        gt = self.gt_vertices
        if gt is not None:
            gt = torch.as_tensor(gt, dtype=torch.float32)
            if gt.ndim != 3 or gt.shape[0] != n or gt.shape[2] != 3:
                raise SubjectDataError(
                    f"SubjectData.gt_vertices must be ({n},V,3) for {n} frames; got {tuple(gt.shape)}"
                )
            object.__setattr__(self, "gt_vertices", gt)
        if self.background is not None:
            bg = torch.as_tensor(self.background, dtype=torch.float32)
            if bg.shape != (3, h, w):
                raise SubjectDataError(f"SubjectData.background must be (3,{h},{w}); got {tuple(bg.shape)}")
            object.__setattr__(self, "background", bg)
        if self.background_motion is not None:
            mo = torch.as_tensor(self.background_motion, dtype=torch.float32)
            if mo.shape != (n, 2, 3):
                raise SubjectDataError(
                    f"SubjectData.background_motion must be ({n},2,3); got {tuple(mo.shape)}"
                )
            object.__setattr__(self, "background_motion", mo)
        if self.root is not None:
            object.__setattr__(self, "root", Path(self.root))

    @property
    def n_frames(self) -> int:
        """Number of frames N."""
        return int(self.params["expression"].shape[0])

    def split_index(self, split: str) -> torch.Tensor:
        """(n,) long frame numbers of ``split``."""
        if split not in self.splits:
            raise SubjectDataError(f"unknown split '{split}'; use one of {SPLITS}")
        return torch.tensor(self.splits[split], dtype=torch.long)
