"""A neck joint for head models without one: the head turns on the neck, the torso below stays upright.

ICT-FaceKit has no skeleton. Its rigid head pose (rotation about the model origin, then translation) moves
every vertex, so the shoulders the mesh avatar grows from the bottom of the mesh turn and tilt with the head.
Here each vertex gets a skinning weight ``w`` from its height on the template: 1 at and above the chin (the
head), 0 from ``length`` of the way from the chin to the bottom of the mesh downwards (the torso), a smooth
step between (the neck), smoothed over the mesh below the chin. The posed vertex blends two rigid motions
(linear blend skinning):

    head:  R v + t
    torso: v + t + (R - I) p          (translated, never rotated)
    v'  =  w * head + (1 - w) * torso

``p`` is the neck pivot, at chin height in the middle of the neck's depth. Both motions agree at ``p``, so
the neck joins head and torso without a gap, and the head vertices (``w = 1``) move exactly as the tracked
rigid pose says: tracking and landmarks are unchanged. The torso takes the head's translation, so a person
who moves across the frame keeps their shoulders under the head.

FLAME has a neck joint of its own, but its rigid pose turns the whole mesh in the same way; the same weights
apply to it, since they come from the template's shape and landmarks only.
"""

from __future__ import annotations

import torch

from src.models.nha.bounds import height_ramps, smooth_on_mesh


def neck_weights(
    template: torch.Tensor,
    landmarks68: torch.Tensor,
    faces: torch.Tensor,
    length: float = 0.5,
    smooth: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Skinning weights of the head and the neck pivot.

    Args:
        template: (V,3) neutral vertices (+y up); landmarks68: (68,3) its landmarks (chin 8).
        faces: (F,3) long, triangles the weights are smoothed over.
        length: where the torso starts, as a fraction (0, 1] of the height from the chin to the bottom of
            the mesh.
        smooth: neighbour-averaging passes over the mesh.

    Returns:
        weights (V,) in [0,1] (1: moves with the head, 0: torso) and pivot (3,).
    """
    if not 0.0 < length <= 1.0:
        raise ValueError(f"model.net.neck.length must lie in (0, 1] (chin-to-bottom fraction), got {length}")
    _, below = height_ramps(template, landmarks68)  # 0 at the chin, 1 at the bottom
    s = (below / length).clamp(0, 1)
    weights = 1.0 - s * s * (3.0 - 2.0 * s)  # smooth step: 1 at the chin, 0 where the torso starts
    smoothed = smooth_on_mesh(weights, faces, smooth).clamp(0, 1)
    weights = torch.where(below > 0, smoothed, torch.ones_like(smoothed))  # the head itself stays exact
    neck = (below > 0) & (below < length)
    ring = template[neck] if neck.any() else template
    lo, hi = ring.min(0).values, ring.max(0).values
    pivot = torch.stack([0.5 * (lo[0] + hi[0]), landmarks68[8, 1], 0.5 * (lo[2] + hi[2])])
    return weights, pivot


def skin_neck(
    vertices: torch.Tensor,
    R: torch.Tensor,
    translation: torch.Tensor,
    weights: torch.Tensor | None,
    pivot: torch.Tensor | None,
) -> torch.Tensor:
    """Pose canonical vertices with the head on a neck over an upright torso (module docstring).

    Args:
        vertices: (B,V,3) canonical vertices; R: (B,3,3) head rotations; translation: (B,3).
        weights: (V,) head weights, or None for the rigid pose of every vertex; pivot: (3,).

    Returns:
        (B,V,3) posed vertices.
    """
    head = vertices @ R.transpose(1, 2) + translation[:, None]
    if weights is None:
        return head
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    torso = vertices + (translation + (R - eye) @ pivot)[:, None]  # (B,V,3)
    w = weights[None, :, None]
    return w * head + (1.0 - w) * torso
