"""A torch Dataset over frames of one subject layout."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from src.core.layout import SubjectLayout


class SubjectFrames(Dataset):
    """Frames ``indices`` of a subject.

    Each item is a dict:
        index () long frame number; image (3,H,W) float in [0,1]; mask (1,H,W) float in [0,1];
        segmentation (H,W) long (if available); normals (3,H,W) float in [-1,1] (if available);
        landmarks68 (68,2) float pixels (if available).
    """

    def __init__(self, layout: SubjectLayout, indices: list[int], meta: dict) -> None:
        self.layout = layout
        self.indices = list(indices)
        self.available = meta["available"]
        self.landmarks = None
        if self.available.get("landmarks68"):
            self.landmarks = torch.from_numpy(np.load(layout.landmarks68_path)).float()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i = self.indices[k]
        item: dict[str, torch.Tensor] = {"index": torch.tensor(i, dtype=torch.long)}
        img = self.layout.read_image("frames", i)
        item["image"] = torch.from_numpy(img).permute(2, 0, 1).float() / 255
        if self.available.get("masks"):
            item["mask"] = torch.from_numpy(self.layout.read_image("masks", i)).float()[None] / 255
        if self.available.get("segmentation"):
            item["segmentation"] = torch.from_numpy(self.layout.read_image("segmentation", i)).long()
        if self.available.get("normals"):
            n = torch.from_numpy(self.layout.read_image("normals", i)).permute(2, 0, 1).float() / 255
            item["normals"] = torch.where(n.sum(0, keepdim=True) > 0, n * 2 - 1, torch.zeros_like(n))
        if self.landmarks is not None:
            item["landmarks68"] = self.landmarks[i]
        return item
