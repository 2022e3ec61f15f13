"""Texture-space helpers: rasterise a mesh's UV layout and grow texels across seams."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from src.render.rasterize import Fragments, rasterize


def rasterize_uv(uvs: torch.Tensor, face_uvs: torch.Tensor, size: int) -> Fragments:
    """Rasterise the UV layout into a ``size`` x ``size`` texture (row 0 at v = 1, OBJ convention).

    Args:
        uvs: (T,2) texture coordinates in [0,1]; face_uvs: (F,3) long corner indices into uvs.
        size: texture side in pixels.

    Returns:
        Fragments of batch 1: face_idx (1,size,size) (the triangle covering each texel), bary, mask.
    """
    screen = torch.stack([uvs[:, 0] * size, (1 - uvs[:, 1]) * size, torch.ones_like(uvs[:, 0])], -1)[None]
    return rasterize(screen, face_uvs, (size, size), perspective_correct=False)


def grow_texture(tex: torch.Tensor, valid: torch.Tensor, iterations: int = 8) -> torch.Tensor:
    """Fill empty texels next to valid ones with the mean of their valid neighbours.

    Bilinear lookups at UV seams then see the island's own colours instead of the empty background.

    Args:
        tex: (C,H,W) texture; valid: (H,W) bool texels that hold data.
        iterations: how many texels deep to grow.

    Returns:
        (C,H,W) texture.
    """
    v = valid.to(tex.dtype)[None, None]
    a = tex[None] * v
    for _ in range(iterations):
        s = F.avg_pool2d(a, 3, 1, 1) * 9
        c = F.avg_pool2d(v, 3, 1, 1) * 9
        grow = (c > 0) & (v == 0)
        a = torch.where(grow, s / c.clamp_min(1), a)
        v = torch.where(grow, torch.ones_like(v), v)
    return a[0]
