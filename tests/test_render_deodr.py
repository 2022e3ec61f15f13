"""Cross-check against deodr (an independent CPU rasteriser, numpy/Cython, float64, one image at a time).

deodr's deferred renderer (``Scene3D.render_deferred`` with ``sigma=0``, ``integer_pixel_centers=False``,
no backface culling) interpolates attributes linearly in screen space and depth-tests the screen-space
interpolated z, which is our ``perspective_correct=False`` mode. We compare coverage, visible face, depth and
barycentrics, and the camera projection (deodr uses the same OpenCV camera model).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.render import Cameras, intrinsics_from_fov, look_at, rasterize

deodr = pytest.importorskip("deodr")
from deodr.differentiable_renderer import Camera, Scene3D  # noqa: E402
from deodr.triangulated_mesh import ColoredTriMesh  # noqa: E402

H, W = 40, 48


def layered_mesh(seed: int):
    """A sphere-ish closed mesh plus a few random triangles in front of / behind it (overlapping layers)."""
    n_lat, n_lon = 8, 12
    th = torch.linspace(0, np.pi, n_lat + 1, dtype=torch.float64)[1:-1]
    ph = torch.linspace(0, 2 * np.pi, n_lon + 1, dtype=torch.float64)[:-1]
    T, P = torch.meshgrid(th, ph, indexing="ij")
    pts = torch.stack([T.sin() * P.cos(), T.cos(), T.sin() * P.sin()], -1).reshape(-1, 3)
    pts = torch.cat([pts, torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]], dtype=torch.float64)]) * 0.1
    top, bot = pts.shape[0] - 2, pts.shape[0] - 1
    faces = []
    for i in range(n_lat - 2):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            c, d = a + n_lon, b + n_lon
            faces += [[a, c, b], [b, c, d]]
    for j in range(n_lon):
        faces += [[top, j, (j + 1) % n_lon]]
        k = (n_lat - 2) * n_lon
        faces += [[bot, k + (j + 1) % n_lon, k + j]]
    g = torch.Generator().manual_seed(seed)
    extra = (torch.rand(9, 3, generator=g, dtype=torch.float64) - 0.5) * torch.tensor([0.3, 0.3, 0.05])
    extra[:3, 2] += 0.15  # in front of the sphere (towards the camera at +z)
    extra[3:6, 2] -= 0.15  # behind
    extra[6:, 2] += 0.03  # intersecting
    V = pts.shape[0]
    faces += [[V, V + 1, V + 2], [V + 3, V + 4, V + 5], [V + 6, V + 7, V + 8]]
    return torch.cat([pts, extra]), torch.tensor(faces)


def near_edge_pixels(vs: torch.Tensor, faces: torch.Tensor, tol: float = 1e-3) -> torch.Tensor:
    """(H,W) bool: pixel centres within ``tol`` px of a triangle edge (where tie rules may differ)."""
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    p = torch.stack([xs, ys], -1).double()
    out = torch.zeros(H, W, dtype=torch.bool)
    for f in faces:
        for e in range(3):
            a, b = vs[f[e], :2], vs[f[(e + 1) % 3], :2]
            ab = b - a
            t = (((p - a) * ab).sum(-1) / (ab * ab).sum()).clamp(0, 1)
            out |= (p - (a + t[..., None] * ab)).norm(dim=-1) < tol
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_against_deodr_deferred(seed):
    verts, faces = layered_mesh(seed)
    eye = torch.tensor([[0.08, 0.05, 0.5]], dtype=torch.float64)
    R, t = look_at(
        eye, torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    )
    K = intrinsics_from_fov(30.0, H, W, dtype=torch.float64)
    cams = Cameras(K, R, t, (H, W))

    cam = Camera(
        extrinsic=np.column_stack([R[0].numpy(), t[0].numpy()]), intrinsic=K[0].numpy(), height=H, width=W
    )
    ours_pix = cams.project(verts[None])[0].numpy()
    np.testing.assert_allclose(cam.project_points(verts.numpy())[0], ours_pix, atol=1e-9)

    mesh = ColoredTriMesh(faces.numpy().astype(np.int32), verts.numpy(), colors=np.ones((verts.shape[0], 3)))
    scene = Scene3D(sigma=0, integer_pixel_centers=False)
    scene.set_mesh(mesh)
    scene.set_background_color(np.zeros(3))
    ref = scene.render_deferred(
        cam, backface_culling=False, normal=False, luminosity=False, uv=False, xyz=False
    )
    ref_mask = torch.from_numpy(ref["color"][..., 0] > 0.5)
    ref_face = torch.from_numpy(ref["face_id"][..., 0]).round().long()
    ref_depth = torch.from_numpy(ref["depth"][..., 0])
    ref_bary = torch.from_numpy(ref["barycentric"])

    vs = cams.screen(verts[None])
    frags = rasterize(vs, faces, (H, W), perspective_correct=False)
    keep = ~near_edge_pixels(vs[0], faces)
    assert keep.float().mean() > 0.9
    mask = frags.mask[0]
    assert (mask == ref_mask)[keep].float().mean() > 0.99
    both = mask & ref_mask & keep
    assert both.sum() > 0.2 * H * W
    assert (frags.face_idx[0] == ref_face)[both].float().mean() > 0.99
    same = both & (frags.face_idx[0] == ref_face)
    torch.testing.assert_close(frags.depth[0][same], ref_depth[same], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(frags.bary[0][same], ref_bary[same], atol=1e-6, rtol=1e-6)

    # perspective-correct mode: same coverage (it only changes interpolation and depth ordering)
    frags_p = rasterize(vs, faces, (H, W), perspective_correct=True)
    assert (frags_p.mask[0] == ref_mask)[keep].float().mean() > 0.99
