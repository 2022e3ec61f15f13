"""Geometry error against ground-truth meshes (same topology), in millimetres."""

from __future__ import annotations

import torch


def scored_vertices(headmodel) -> torch.Tensor:
    """(K,) long ids of the vertices geometry scores use: the face region of the vertices that have ground
    truth (all of them, or the base mesh's first ``n_base_vertices`` of a subdivided model)."""
    n_gt = getattr(headmodel, "n_base_vertices", headmodel.vertex_regions.shape[0])
    names = headmodel.region_names
    face_id = names.index("face") if "face" in names else 0
    return (headmodel.vertex_regions[:n_gt] == face_id).nonzero().squeeze(1)


def vertex_errors(
    pred: torch.Tensor, gt: torch.Tensor, chunk: int = 2048
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean per-vertex distance and symmetric Hausdorff distance, in mm.

    Args:
        pred: (B,V,3) predicted vertices in metres; gt: (B,V,3) ground truth (same vertex order).
        chunk: rows per distance block (bounds memory of the Hausdorff search).

    Returns:
        mean (B,) and hausdorff (B,) in millimetres. The mean uses the known correspondence; the
        Hausdorff distance treats both as point sets (max over points of the distance to the other set).
    """
    mean = (pred - gt).norm(dim=-1).mean(-1) * 1000

    def directed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        worst = torch.zeros(a.shape[0], device=a.device, dtype=a.dtype)
        for s in range(0, a.shape[1], chunk):
            d = (
                torch.cdist(a[:, s : s + chunk], b, compute_mode="donot_use_mm_for_euclid_dist")
                .min(dim=-1)
                .values
            )
            worst = torch.maximum(worst, d.max(dim=-1).values)
        return worst

    haus = torch.maximum(directed(pred, gt), directed(gt, pred)) * 1000
    return mean, haus
