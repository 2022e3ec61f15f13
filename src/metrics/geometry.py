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


def rigid_align(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Best rotation + translation of each point set onto its target (Kabsch, least squares).

    Args:
        src: (B,P,3) points to move; dst: (B,P,3) targets in the same order.

    Returns:
        (B,P,3) ``src`` rotated about its centroid and moved onto ``dst``'s centroid. No scale and no
        reflection: a mirrored or scaled shape keeps its error.
    """
    ms, md = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    a, b = (src - ms).double(), (dst - md).double()
    U, _, Vt = torch.linalg.svd(a.transpose(1, 2) @ b)  # (B,3,3) covariance
    d = torch.sign(torch.linalg.det(U @ Vt))
    flip = torch.ones_like(U[:, 0])
    flip[:, 2] = d
    rot = (U * flip[:, None]) @ Vt  # rotation applied on the right: a @ rot ~ b
    return (a @ rot).to(src.dtype) + md


def geometry_errors(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-frame geometry scores of predicted against ground-truth vertices (same order), in mm.

    Args:
        pred, gt: (B,K,3) scored vertices (see :func:`scored_vertices`) in metres.

    Returns:
        {"geometry_mean_mm", "geometry_hausdorff_mm", "geometry_aligned_mean_mm"}, each (B,). The aligned
        mean is measured after a rigid alignment of each frame (as scan benchmarks do), so it scores
        shape and expression without the global placement a single camera cannot pin down in depth.
    """
    mean, haus = vertex_errors(pred, gt)
    aligned = (rigid_align(pred, gt) - gt).norm(dim=-1).mean(-1) * 1000
    return {"geometry_mean_mm": mean, "geometry_hausdorff_mm": haus, "geometry_aligned_mean_mm": aligned}


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
