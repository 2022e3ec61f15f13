"""A torch Dataset over frames of one subject layout."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from src.core.layout import SubjectLayout
from src.core.outputs import Batch
from src.core.streams import read_background, read_valid


class SubjectFrames(Dataset):
    """Frames ``indices`` of a subject.

    Each item is a dict:
        index () long frame number; image (3,H,W) float in [0,1]; mask (1,H,W) float in [0,1];
        segmentation (H,W) long (if available); normals (3,H,W) float in [-1,1] (if available);
        landmarks68 (68,2) and landmarks478 (478,2) float pixels (if available); valid (1,H,W) float, 0
        where the crop was padded (all ones when absent); occlusion (1,H,W) float, 1 where a hand or
        object covers the face (all zeros when absent); occluded () float, 1 for a frame with an occluder;
        background (3,H,W) float, the plate as this frame sees it (only when the subject has one). See
        src/core/streams.py.
    """

    def __init__(self, layout: SubjectLayout, indices: list[int], meta: dict) -> None:
        self.layout = layout
        self.indices = list(indices)
        self.available = meta["available"]
        self.landmarks = None
        if self.available.get("landmarks68"):
            self.landmarks = torch.from_numpy(np.load(layout.landmarks68_path)).float()
        self.dense = None
        if self.available.get("landmarks478"):
            self.dense = torch.from_numpy(np.load(layout.landmarks478_path)).float()
        h, w = int(meta["height"]), int(meta["width"])
        valid = read_valid(layout, meta)
        self.valid = torch.ones(1, h, w) if valid is None else torch.from_numpy(valid).float()[None]
        self.occluded_frames = set((meta.get("occlusion") or {}).get("frames", []))
        self.has_background = read_background(layout, meta=meta) is not None
        self.meta = meta

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i = self.indices[k]
        item: dict[str, torch.Tensor] = {Batch.INDEX: torch.tensor(i, dtype=torch.long)}
        img = self.layout.read_image("frames", i)
        item[Batch.IMAGE] = torch.from_numpy(img).permute(2, 0, 1).float() / 255
        if self.available.get("masks"):
            item[Batch.MASK] = torch.from_numpy(self.layout.read_image("masks", i)).float()[None] / 255
        if self.available.get("segmentation"):
            item[Batch.SEGMENTATION] = torch.from_numpy(self.layout.read_image("segmentation", i)).long()
        if self.available.get("normals"):
            n = torch.from_numpy(self.layout.read_image("normals", i)).permute(2, 0, 1).float() / 255
            item[Batch.NORMALS] = torch.where(n.sum(0, keepdim=True) > 0, n * 2 - 1, torch.zeros_like(n))
        if self.landmarks is not None:
            item[Batch.LANDMARKS68] = self.landmarks[i]
        if self.dense is not None:
            item[Batch.LANDMARKS478] = self.dense[i]
        item[Batch.VALID] = self.valid
        if self.available.get("occlusion"):
            item[Batch.OCCLUSION] = (
                torch.from_numpy(self.layout.read_image("occlusion", i)).float()[None] / 255
            )
        else:
            item[Batch.OCCLUSION] = torch.zeros_like(self.valid)
        item[Batch.OCCLUDED] = torch.tensor(float(i in self.occluded_frames))
        if self.has_background:
            item[Batch.BACKGROUND] = read_background(self.layout, i, self.meta)
        return item
