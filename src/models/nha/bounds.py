"""Per-vertex bounds of the mesh avatar's geometry offsets: small on the face, large where hair and body are.

A head model ends at the scalp and the neck; the person in a video has hair several centimetres above the
scalp and shoulders that reach past the neck. One bound for every vertex either lets the face drift (large)
or keeps the avatar bald and neck-only (small: 1 cm). The bound here grows with height
above the brows on the head model's hair regions (``hair``) and with depth below the chin on every offset
region (``body``), both measured on the template between its own landmarks and its extent, so nothing
depends on the head model's size or units beyond metres for the bounds themselves. The result is smoothed
over the mesh so neighbouring vertices never differ sharply in how far they may move.
"""

from __future__ import annotations

import torch

from src.losses import mesh_edges


def height_ramps(template: torch.Tensor, landmarks68: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How far above the brows and below the chin each vertex lies, as fractions of the mesh's extent.

    Args:
        template: (V,3) neutral vertices, +y up.
        landmarks68: (68,3) the template's iBUG-68 landmarks (brows 17-26, chin 8).

    Returns:
        above (V,) in [0,1]: 0 at or below the mean brow height, 1 at the top of the mesh; below (V,) in
        [0,1]: 0 at or above the chin, 1 at the bottom of the mesh.
    """
    y = template[:, 1]
    brow, chin = landmarks68[17:27, 1].mean(), landmarks68[8, 1]
    above = ((y - brow) / (y.max() - brow).clamp_min(1e-9)).clamp(0, 1)
    below = ((chin - y) / (chin - y.min()).clamp_min(1e-9)).clamp(0, 1)
    return above, below


def smooth_on_mesh(values: torch.Tensor, faces: torch.Tensor, iterations: int) -> torch.Tensor:
    """Average each vertex with its mesh neighbours ``iterations`` times (isolated vertices keep theirs).

    Args:
        values: (V,) per-vertex values; faces: (F,3) long.

    Returns:
        (V,) smoothed values.
    """
    if iterations <= 0:
        return values
    e = mesh_edges(faces)
    src = torch.cat([e[:, 0], e[:, 1]])
    dst = torch.cat([e[:, 1], e[:, 0]])
    deg = torch.zeros_like(values).index_add_(0, src, torch.ones_like(src, dtype=values.dtype))
    for _ in range(iterations):
        total = torch.zeros_like(values).index_add_(0, src, values[dst])
        values = torch.where(deg > 0, 0.5 * values + 0.5 * total / deg.clamp_min(1), values)
    return values


def offset_bounds(
    template: torch.Tensor,
    landmarks68: torch.Tensor,
    faces: torch.Tensor,
    offset_mask: torch.Tensor,
    hair_mask: torch.Tensor,
    base: float,
    hair: float = 0.0,
    body: float = 0.0,
    smooth: int = 0,
) -> torch.Tensor:
    """The largest offset (metres, per coordinate) each vertex may get.

    Args:
        template: (V,3) neutral vertices (+y up); landmarks68: (68,3) its landmarks; faces: (F,3) the
            rendered triangles (smoothing runs over their edges).
        offset_mask: (V,) bool, vertices the geometry network moves; hair_mask: (V,) bool, vertices of the
            head model's hair regions.
        base: the bound everywhere (the face keeps it).
        hair: added on hair-region vertices in proportion to their height above the brows (full at the top).
        body: added on offset vertices in proportion to their depth below the chin (full at the bottom edge),
            where a neck-only mesh has to reach the shoulders.
        smooth: neighbour-averaging passes over the mesh (the bound of vertices that do not move is base, so
            smoothing also softens the step at the border of the offset regions).

    Returns:
        (V,) bounds, ``base`` where ``hair`` and ``body`` are 0.
    """
    above, below = height_ramps(template, landmarks68)
    extra = hair * above * hair_mask.to(template.dtype) + body * below * offset_mask.to(template.dtype)
    return base + smooth_on_mesh(extra, faces, smooth)
