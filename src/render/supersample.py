"""Supersampling: render at ``factor`` times the resolution through :meth:`Cameras.resized`, then reduce.

Rendering at ``s`` x and averaging each ``s x s`` block (:func:`box_filter`) anti-aliases edges: a pixel
half covered by the mesh gets alpha 0.5. Values that must not be averaged (labels, unit normals) take the
sample nearest each output pixel's centre (:func:`center_samples`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from src.render.camera import Cameras


def supersample_cameras(cameras: Cameras, factor: int) -> Cameras:
    """The same views at ``factor`` times the resolution (intrinsics scaled exactly).

    Raises:
        ValueError: ``factor`` is not a positive integer.
    """
    if int(factor) != factor or factor < 1:
        raise ValueError(f"supersample factor {factor} must be a positive integer (1 = off)")
    H, W = cameras.image_size
    return cameras if factor == 1 else cameras.resized((H * int(factor), W * int(factor)))


def box_filter(images: Tensor, factor: int) -> Tensor:
    """(B,C,H*f,W*f) -> (B,C,H,W): the mean of each ``f x f`` block (unchanged for f = 1)."""
    return images if factor == 1 else F.avg_pool2d(images, int(factor))


def center_samples(images: Tensor, factor: int) -> Tensor:
    """(B,C,H*f,W*f) -> (B,C,H,W): the sample of each ``f x f`` block nearest the output pixel's centre."""
    c = int(factor) // 2
    return images[:, :, c :: int(factor), c :: int(factor)]
