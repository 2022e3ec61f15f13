"""MeshRenderer end to end: shapes, coverage, texture orientation, shading conventions, a large mesh."""

from __future__ import annotations

import math

import pytest
import torch

from src.render import (
    Cameras,
    MeshRenderer,
    box_filter,
    center_samples,
    intrinsics_from_fov,
    lambert,
    look_at,
    sh_ambient,
    sh_shading,
    supersample_cameras,
    vertex_normals,
)

S = 32  # image size
FOV = 30.0
DIST = 0.6


def front_camera(B=1, size=S, dist=DIST, dtype=torch.float32):
    eye = torch.tensor([[0.0, 0.0, dist]], dtype=dtype).expand(B, 3)
    R, t = look_at(
        eye, torch.zeros(B, 3, dtype=dtype), torch.tensor([[0.0, 1.0, 0.0]], dtype=dtype).expand(B, 3)
    )
    return Cameras(intrinsics_from_fov(FOV, size, size, dtype=dtype), R, t, (size, size))


def quad(half=0.1):
    """A square in the z=0 plane facing +z (CCW seen from +z), with OBJ-style uvs (v up)."""
    v = torch.tensor([[-half, -half, 0.0], [half, -half, 0.0], [half, half, 0.0], [-half, half, 0.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uvs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    return v, faces, uvs, faces.clone()


def cube(half=0.08):
    c = (
        torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float32)
        * half
    )
    idx = lambda x, y, z: x * 4 + y * 2 + z  # noqa: E731
    faces = []
    for axis in range(3):
        for s in (0, 1):
            corners = []
            for a, b in ((0, 0), (1, 0), (1, 1), (0, 1)):
                p = [0, 0, 0]
                p[axis], p[(axis + 1) % 3], p[(axis + 2) % 3] = s, a, b
                corners.append(idx(*p))
            if s == 0:
                corners = corners[::-1]
            faces += [[corners[0], corners[1], corners[2]], [corners[0], corners[2], corners[3]]]
    return c, torch.tensor(faces)


def uv_sphere(n_lat: int, n_lon: int, radius=0.12):
    th = torch.linspace(0, math.pi, n_lat + 1)[1:-1]
    ph = torch.linspace(0, 2 * math.pi, n_lon + 1)[:-1]
    T, P = torch.meshgrid(th, ph, indexing="ij")
    v = torch.stack([T.sin() * P.sin(), T.cos(), T.sin() * P.cos()], -1).reshape(-1, 3)
    v = torch.cat([v, torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])]) * radius
    top, bot = v.shape[0] - 2, v.shape[0] - 1
    i = torch.arange(n_lat - 2)[:, None]
    j = torch.arange(n_lon)[None, :]
    a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
    c, d = a + n_lon, b + n_lon
    quads = torch.stack([torch.stack([a, c, b], -1), torch.stack([b, c, d], -1)], 2).reshape(-1, 3)
    jj = torch.arange(n_lon)
    caps = torch.cat(
        [
            torch.stack([torch.full_like(jj, top), (jj + 1) % n_lon, jj], -1),
            torch.stack(
                [torch.full_like(jj, bot), (n_lat - 2) * n_lon + jj, (n_lat - 2) * n_lon + (jj + 1) % n_lon],
                -1,
            ),
        ]
    )
    return v, torch.cat([quads, caps])


def expected_quad_area(half=0.1, size=S, dist=DIST):
    f = 0.5 * size / math.tan(math.radians(FOV / 2))
    return (2 * half * f / dist) ** 2, 8 * half * f / dist  # area, perimeter (px)


def test_vertex_colour_quad_outputs():
    v, faces, _, _ = quad()
    cams = front_camera()
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    out = MeshRenderer()(v[None], faces, cams, vertex_colors=colors)
    assert out["rgb"].shape == (1, 3, S, S) and out["alpha"].shape == (1, 1, S, S)
    assert out["mask"].shape == (1, 1, S, S) and out["mask"].dtype == torch.bool
    assert out["depth"].shape == (1, 1, S, S) and out["normals"].shape == (1, 3, S, S)
    assert out["face_idx"].shape == (1, S, S) and out["bary"].shape == (1, S, S, 3)
    area, perim = expected_quad_area()
    assert abs(out["mask"].sum().item() - area) < perim
    m = out["mask"][0, 0]
    torch.testing.assert_close(out["depth"][0, 0][m], torch.full((int(m.sum()),), DIST), atol=1e-5, rtol=0)
    assert (out["depth"][0, 0][~m] == 0).all() and (out["rgb"][0][:, ~m] == 0).all()
    n = out["normals"][0][:, m]
    torch.testing.assert_close(n, torch.tensor([0.0, 0.0, -1.0])[:, None].expand_as(n), atol=1e-5, rtol=0)
    assert (out["normals"][0][:, ~m] == 0).all()
    # vertex 0 (-x, -y: image bottom-left) is red, vertex 2 (+x, +y: top-right) blue
    rows, cols = m.nonzero(as_tuple=True)
    bl = out["rgb"][0, :, rows.max(), cols.min()]
    tr = out["rgb"][0, :, rows.min(), cols.max()]
    assert bl[0] > 0.8 and tr[2] > 0.8
    alpha = out["alpha"][0, 0]
    assert (alpha >= 0).all() and (alpha <= 1).all()
    assert alpha[S // 2, S // 2] == 1 and alpha[0, 0] == 0
    assert ((alpha > 0.02) & (alpha < 0.98)).any()
    hard = MeshRenderer()(v[None], faces, cams, vertex_colors=colors, soft_alpha=False)["alpha"]
    assert torch.equal(hard, out["mask"].float())


def test_texture_orientation_and_uv_output():
    v, faces, uvs, face_uvs = quad()
    tex = torch.zeros(1, 3, 8, 8)
    tex[:, 0, :4] = 1.0  # top half of the texture image: red
    tex[:, 2, 4:] = 1.0  # bottom half: blue
    out = MeshRenderer(background=0.5)(v[None], faces, front_camera(), uv=(uvs, face_uvs), texture=tex)
    m = out["mask"][0, 0]
    rows = m.nonzero(as_tuple=True)[0]
    top, bottom = rows.min().item(), rows.max().item()
    mid = S // 2
    assert out["rgb"][0, 0, top + 1, mid] > 0.9 and out["rgb"][0, 2, top + 1, mid] < 0.1  # v near 1: red
    assert out["rgb"][0, 2, bottom - 1, mid] > 0.9 and out["rgb"][0, 0, bottom - 1, mid] < 0.1
    assert (out["rgb"][0][:, ~m] == 0.5).all()
    assert out["uv"].shape == (1, 2, S, S)
    assert out["uv"][0, 1, top, mid] > 0.9 and out["uv"][0, 1, bottom, mid] < 0.1
    assert out["uv"][0, 0, mid, 0 if m[mid, 0] else m[mid].nonzero().min()] < 0.1


def test_cube_culling_batch_and_cameras():
    v, faces = cube()
    B = 2
    eye = torch.tensor([[0.3, 0.2, 0.4], [-0.4, -0.1, 0.3]])
    R, t = look_at(eye, torch.zeros(B, 3), torch.tensor([[0.0, 1.0, 0.0]] * B))
    cams = Cameras(intrinsics_from_fov(FOV, S, S), R, t, (S, S))
    colors = torch.rand(8, 3)
    out = MeshRenderer()(v[None], faces, cams, vertex_colors=colors)  # vertices broadcast to the cameras
    culled = MeshRenderer(cull_backfaces=True)(v[None], faces, cams, vertex_colors=colors)
    assert out["rgb"].shape == (B, 3, S, S)
    assert torch.equal(out["mask"], culled["mask"]) and torch.equal(out["face_idx"], culled["face_idx"])
    # three faces (6 triangles) visible from a corner view, normals towards the camera
    for b in range(B):
        vis = out["face_idx"][b][out["face_idx"][b] >= 0].unique()
        assert len(vis) == 6
    n = out["normals"].permute(0, 2, 3, 1)[out["mask"][:, 0]]
    assert (n[:, 2] < 0).float().mean() > 0.8  # smooth vertex normals tilt outwards near the edges
    # flipping the winding makes the far faces the "front" ones: same silhouette, disjoint visible faces
    flipped = MeshRenderer(cull_backfaces=True)(v[None], faces.flip(1), cams)
    assert torch.equal(flipped["mask"], out["mask"])
    for b in range(B):
        vis, vis_f = (o["face_idx"][b][o["face_idx"][b] >= 0].unique().tolist() for o in (out, flipped))
        assert len(vis_f) == 6 and not set(vis) & set(vis_f)


def test_shading_conventions():
    n = torch.nn.functional.normalize(torch.randn(2, 4, 5, 3), dim=-1)
    torch.testing.assert_close(sh_shading(n, sh_ambient(0.7, batch_size=2)), torch.full((2, 4, 5, 3), 0.7))
    # single-band check against the closed form: L_1,0 (z) term -> (2/3) * c1 * z * L
    sh = torch.zeros(2, 9, 3)
    sh[:, 2] = 1.0
    expect = (2.0 / 3.0) * math.sqrt(3 / (4 * math.pi)) * n[..., 2:3]
    torch.testing.assert_close(sh_shading(n, sh), expect.expand(-1, -1, -1, 3))
    light = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    s = lambert(n, light, ambient=0.2, diffuse=0.8)
    assert s.shape == (2, 4, 5, 1)
    torch.testing.assert_close(s[0, ..., 0], 0.2 + 0.8 * n[0, ..., 2].clamp_min(0))
    assert lambert(n, light, ambient=torch.ones(2, 3) * 0.1, diffuse=0.5).shape == (2, 4, 5, 3)
    v, faces = cube()
    vn = vertex_normals(v[None], faces)
    torch.testing.assert_close(vn[0], torch.nn.functional.normalize(v, dim=-1), atol=1e-6, rtol=0)


def test_renderer_lighting_and_errors():
    v, faces, _, _ = quad()
    cams = front_camera()
    r = MeshRenderer()
    out = r(v[None], faces, cams, vertex_colors=torch.ones(4, 3) * 0.5, sh=sh_ambient(0.8))
    m = out["mask"][0, 0]
    torch.testing.assert_close(out["rgb"][0][:, m], torch.full((3, int(m.sum())), 0.4))
    # light along the camera axis, towards the camera (camera-space -z): full diffuse on a frontal quad
    out = r(v[None], faces, cams, light_dir=torch.tensor([0.0, 0.0, -1.0]), ambient=0.1, diffuse=0.5)
    torch.testing.assert_close(out["rgb"][0][:, m], torch.full((3, int(m.sum())), 0.6))
    with pytest.raises(ValueError, match="backend"):
        MeshRenderer(backend="pytorch3d")
    with pytest.raises(ValueError, match="uv"):
        r(v[None], faces, cams, texture=torch.zeros(1, 3, 4, 4))


def test_large_mesh_float32_batch():
    """~50k triangles at 128 px, batch 2, float32: runs forward and backward (no timing assertions)."""
    v, faces = uv_sphere(160, 160)
    assert 49_000 < faces.shape[0] < 52_000
    B, size = 2, 128
    cams = front_camera(B, size=size)
    verts = (
        v[None].repeat(B, 1, 1) + torch.tensor([[[0.0, 0.0, 0.0]], [[0.02, -0.01, 0.0]]])
    ).requires_grad_()
    colors = torch.rand(B, v.shape[0], 3, requires_grad=True)
    out = MeshRenderer()(verts, faces, cams, vertex_colors=colors, sh=sh_ambient(1.0, batch_size=B))
    f = 0.5 * size / math.tan(math.radians(FOV / 2))
    r_pix = f * 0.12 / math.sqrt(DIST**2 - 0.12**2)  # silhouette radius of a sphere in perspective
    area = out["mask"].float().sum((1, 2, 3))
    assert ((area - math.pi * r_pix**2).abs() < 2 * math.pi * r_pix).all()
    assert all(torch.isfinite(out[k]).all() for k in ("rgb", "alpha", "depth", "normals"))
    (out["rgb"].mean() + out["alpha"].mean()).backward()
    assert torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0
    assert torch.isfinite(colors.grad).all() and colors.grad.abs().sum() > 0


def test_supersampling_scales_the_camera_and_filters_edges():
    """4x supersampling: projections scale by 4 about the image corner; a box-filtered edge is fractional."""
    cams = front_camera()
    hi = supersample_cameras(cams, 4)
    assert hi.image_size == (4 * S, 4 * S) and supersample_cameras(cams, 1) is cams
    pts = torch.tensor([[[0.03, -0.02, 0.01], [-0.05, 0.04, -0.02]]])
    assert torch.allclose(hi.project(pts), 4 * cams.project(pts), atol=1e-4)
    with pytest.raises(ValueError, match="positive integer"):
        supersample_cameras(cams, 1.5)
    v, faces, _, _ = quad(0.0523)
    mask = MeshRenderer()(v[None], faces, hi, soft_alpha=False)["mask"].float()
    alpha = box_filter(mask, 4)
    assert alpha.shape == (1, 1, S, S)
    assert ((alpha > 0) & (alpha < 1)).any()  # partially covered edge pixels
    assert torch.equal(center_samples(mask, 4), mask[:, :, 2::4, 2::4])
    assert alpha.sum() == pytest.approx(mask.sum() / 16)
