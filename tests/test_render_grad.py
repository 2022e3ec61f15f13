"""Autograd of the renderer against central finite differences (float64).

The losses are piecewise smooth: coverage changes when a pixel centre crosses an edge. The test meshes are
random but seeded, and the helper checks that no pixel centre lies within 1e-4 px of an edge, so the finite
difference steps (1e-6) never cross a discontinuity.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

from src.render import (
    Cameras,
    MeshRenderer,
    interpolate,
    intrinsics_from_fov,
    look_at,
    rasterize,
    sh_shading,
    soft_silhouette,
    vertex_normals,
)
from src.render.silhouette import signed_distance

H, W = 12, 14


def icosphere_like(seed: int, dtype=torch.float64):
    """A randomly perturbed icosahedron (12 vertices, 20 faces, CCW outward)."""
    p = (1 + math.sqrt(5)) / 2
    v = torch.tensor(
        [[-1, p, 0], [1, p, 0], [-1, -p, 0], [1, -p, 0], [0, -1, p], [0, 1, p], [0, -1, -p], [0, 1, -p],
         [p, 0, -1], [p, 0, 1], [-p, 0, -1], [-p, 0, 1]],
        dtype=dtype,
    )  # fmt: skip
    f = torch.tensor(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
         [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    v = v / v.norm(dim=-1, keepdim=True) * (0.1 + 0.02 * torch.rand(12, 1, generator=g, dtype=dtype))
    return v, f


def camera(B=1, dtype=torch.float64):
    R, t = look_at(torch.tensor([[0.05, 0.1, 0.6]] * B, dtype=dtype), torch.zeros(B, 3, dtype=dtype))
    K = intrinsics_from_fov(30.0, H, W, dtype=dtype)
    return Cameras(K, R, t, (H, W))


def min_pixel_edge_distance(vs, faces):
    """Smallest distance (px) from any pixel centre to any (valid) triangle edge."""
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    px, py = xs.reshape(-1).double(), ys.reshape(-1).double()
    best = math.inf
    for b in range(vs.shape[0]):
        for f in faces:
            tri = vs[b, f].detach()
            for e in range(3):
                deg = torch.stack([tri[e], tri[(e + 1) % 3], tri[(e + 1) % 3]])[None].expand(
                    px.shape[0], 3, 3
                )
                best = min(best, signed_distance(deg, px, py).abs().min().item())
    return best


def test_interpolated_colour_gradient_screen_space():
    g = torch.Generator().manual_seed(0)
    vs = torch.rand(1, 8, 3, generator=g, dtype=torch.float64)
    vs[..., 0] *= W
    vs[..., 1] *= H
    vs[..., 2] += 0.5
    faces = torch.tensor([[0, 1, 2], [2, 3, 4], [4, 5, 6], [1, 6, 7], [0, 3, 7]])
    assert min_pixel_edge_distance(vs, faces) > 1e-4
    colors = torch.rand(8, 3, generator=g, dtype=torch.float64)
    weights = torch.rand(1, H, W, 3, generator=g, dtype=torch.float64)

    def loss(v, c):
        frags = rasterize(v, faces, (H, W))
        return (interpolate(c, faces, frags) * weights).sum() + (frags.depth * weights[..., 0]).sum()

    assert gradcheck(
        loss, (vs.requires_grad_(), colors.requires_grad_()), eps=1e-6, atol=1e-6, fast_mode=True
    )


@pytest.mark.parametrize("perspective_correct", [True, False])
def test_interpolated_colour_gradient_world_space(perspective_correct):
    v, faces = icosphere_like(1)
    cams = camera()
    assert min_pixel_edge_distance(cams.screen(v[None]), faces) > 1e-4
    g = torch.Generator().manual_seed(1)
    colors = torch.rand(1, 12, 3, generator=g, dtype=torch.float64)
    weights = torch.rand(1, H, W, 3, generator=g, dtype=torch.float64)

    def loss(verts):
        frags = rasterize(cams.screen(verts), faces, (H, W), perspective_correct=perspective_correct)
        return (interpolate(colors, faces, frags) * weights).sum()

    assert gradcheck(loss, (v[None].clone().requires_grad_(),), eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_soft_silhouette_gradient(sigma):
    v, faces = icosphere_like(2)
    cams = camera()
    assert min_pixel_edge_distance(cams.screen(v[None]), faces) > 1e-4
    weights = torch.rand(1, H, W, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def loss(verts):
        alpha = soft_silhouette(cams.screen(verts), faces, (H, W), sigma=sigma)
        return (alpha * weights).sum()

    verts = v[None].clone().requires_grad_()
    alpha = soft_silhouette(cams.screen(verts), faces, (H, W), sigma=sigma)
    assert alpha.shape == (1, H, W) and (alpha >= 0).all() and (alpha <= 1).all()
    assert ((alpha > 0.01) & (alpha < 0.99)).any()  # there is a soft boundary
    assert gradcheck(loss, (verts,), eps=1e-6, atol=1e-6, fast_mode=True)


def test_soft_silhouette_matches_bruteforce_reference():
    """Banded/culled evaluation == the plain SoftRas product over all triangles (within the band)."""
    from src.render.silhouette import boundary_band

    v, faces = icosphere_like(3)
    vs = camera().screen(v[None]).detach().requires_grad_()
    sigma = 0.7
    alpha = soft_silhouette(vs, faces, (H, W), sigma=sigma)
    r = math.ceil(4 * sigma) + 1
    mask = rasterize(vs, faces, (H, W)).mask
    band = boundary_band(mask, r)[0]
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    acc = torch.zeros(H * W, dtype=torch.float64)
    for f in faces:
        d = signed_distance(
            vs[0, f][None].expand(H * W, 3, 3), xs.reshape(-1).double(), ys.reshape(-1).double()
        )
        acc = acc + torch.where(d < r, torch.nn.functional.logsigmoid(d / sigma), torch.zeros_like(d))
    ref = torch.where(band, -torch.expm1(acc).view(H, W), mask[0].double())
    torch.testing.assert_close(alpha[0], ref)
    torch.testing.assert_close(soft_silhouette(vs, faces, (H, W), sigma=sigma, max_pairs=5), alpha)
    w = torch.rand(H, W, dtype=torch.float64)
    g1 = torch.autograd.grad((alpha[0] * w).sum(), vs)[0]
    g2 = torch.autograd.grad((ref * w).sum(), vs)[0]
    torch.testing.assert_close(g1, g2)


def test_outputs_stay_in_the_graph_when_nothing_is_visible():
    v, faces = icosphere_like(0)
    verts = (v[None] + torch.tensor([0.0, 0.0, 5.0], dtype=v.dtype)).requires_grad_()  # behind the camera
    out = MeshRenderer()(verts, faces, camera())
    assert not out["mask"].any()
    (out["alpha"].sum() + out["depth"].sum()).backward()
    assert (verts.grad == 0).all()


def test_mesh_renderer_gradient():
    v, faces = icosphere_like(4)
    cams = camera()
    assert min_pixel_edge_distance(cams.screen(v[None]), faces) > 1e-4
    g = torch.Generator().manual_seed(4)
    colors = torch.rand(12, 3, generator=g, dtype=torch.float64)
    sh = torch.randn(1, 9, 3, generator=g, dtype=torch.float64) * 0.3
    sh[:, 0] += 3.0
    w_rgb = torch.rand(1, 3, H, W, generator=g, dtype=torch.float64)
    w_a = torch.rand(1, 1, H, W, generator=g, dtype=torch.float64)
    renderer = MeshRenderer(sigma=0.6)

    def loss(verts, col, sh_):
        out = renderer(verts, faces, cams, vertex_colors=col, sh=sh_)
        return (out["rgb"] * w_rgb).sum() + (out["alpha"] * w_a).sum() + out["normals"].sum()

    args = (v[None].clone().requires_grad_(), colors.requires_grad_(), sh.requires_grad_())
    assert gradcheck(loss, args, eps=1e-6, atol=1e-5, fast_mode=True)


def test_shading_gradients():
    g = torch.Generator().manual_seed(5)
    verts = torch.randn(1, 6, 3, generator=g, dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [3, 4, 5], [1, 4, 2]])
    assert gradcheck(
        lambda x: vertex_normals(x, faces), (verts.requires_grad_(),), eps=1e-6, atol=1e-6, fast_mode=True
    )
    n = torch.nn.functional.normalize(torch.randn(1, 3, 4, 3, generator=g, dtype=torch.float64), dim=-1)
    sh = torch.randn(1, 9, 3, generator=g, dtype=torch.float64)
    assert gradcheck(
        sh_shading, (n.requires_grad_(), sh.requires_grad_()), eps=1e-6, atol=1e-6, fast_mode=True
    )
