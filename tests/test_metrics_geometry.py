"""Vertex error, Hausdorff distance and rigid alignment against slow loops."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import numpy as np
import torch

from src.headmodel.rotation import axis_angle_to_matrix
from src.metrics.geometry import geometry_errors, rigid_align, vertex_errors


def test_vertex_errors_against_loop():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 50, 3, generator=g)
    pred = gt + 0.01 * torch.randn(2, 50, 3, generator=g)
    mean, haus = vertex_errors(pred, gt, chunk=7)
    for b in range(2):
        m = sum((pred[b, i] - gt[b, i]).norm() for i in range(50)) / 50 * 1000
        d_pg = max(min((pred[b, i] - gt[b, j]).norm() for j in range(50)) for i in range(50))
        d_gp = max(min((gt[b, i] - pred[b, j]).norm() for j in range(50)) for i in range(50))
        torch.testing.assert_close(mean[b], m, atol=1e-3, rtol=1e-5)
        torch.testing.assert_close(haus[b], max(d_pg, d_gp) * 1000, atol=1e-3, rtol=1e-5)
    # a rigid shift of 2 mm gives exactly 2 mm mean error
    mean, _ = vertex_errors(gt + torch.tensor([0.002, 0.0, 0.0]), gt)
    torch.testing.assert_close(mean, torch.full((2,), 2.0), atol=1e-4, rtol=0)


def test_identical_sets_have_zero_hausdorff():
    pts = torch.rand(1, 3000, 3)
    mean, haus = vertex_errors(pts, pts)
    assert mean.item() == 0 and haus.item() == 0


def test_rigid_align_against_per_frame_loop():
    """Batched Kabsch equals a per-frame numpy solve, undoes a known rigid motion, and never mirrors."""
    g = torch.Generator().manual_seed(1)
    dst = torch.randn(3, 40, 3, generator=g, dtype=torch.float64)
    rot = axis_angle_to_matrix(torch.randn(3, 3, generator=g, dtype=torch.float64))
    moving = (dst + 0.05 * torch.randn(3, 40, 3, generator=g, dtype=torch.float64)) @ rot.transpose(
        1, 2
    ) + 2.0
    out = rigid_align(moving, dst)
    for b in range(3):  # the obvious per-frame solve
        a, c = moving[b].numpy(), dst[b].numpy()
        ma, mc = a.mean(0), c.mean(0)
        U, _, Vt = np.linalg.svd((a - ma).T @ (c - mc))
        R = Vt.T @ np.diag([1, 1, np.sign(np.linalg.det(Vt.T @ U.T))]) @ U.T
        np.testing.assert_allclose(out[b].numpy(), (a - ma) @ R.T + mc, atol=1e-9)
    # an exact rigid motion is undone exactly
    undone = rigid_align(dst @ rot.transpose(1, 2) - 1.0, dst)
    np.testing.assert_allclose(undone.numpy(), dst.numpy(), atol=1e-9)
    # a mirror image is not a rigid motion: its error stays
    mirrored = dst * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert (rigid_align(mirrored, dst) - dst).norm(dim=-1).mean() > 0.1
    # geometry_errors: placement errors vanish after alignment, shape errors do not
    moved = dst.float() @ rot.float().transpose(1, 2) * 0.01 + 0.003
    errs = geometry_errors(moved, dst.float() * 0.01)
    assert (errs["geometry_mean_mm"] > 1).all() and (errs["geometry_aligned_mean_mm"] < 1e-3).all()
