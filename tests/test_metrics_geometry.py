"""Vertex error and Hausdorff distance against a slow loop."""

import src  # noqa: F401

# isort: split
import torch

from src.metrics.geometry import vertex_errors


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
