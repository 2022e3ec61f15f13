"""Rasteriser, interpolation and cameras against slow per-pixel reference loops."""

from __future__ import annotations

import math

import pytest
import torch

from src.render import Cameras, interpolate, intrinsics, intrinsics_from_fov, look_at, rasterize

H, W = 16, 20
NEAR = 1e-3


def random_scene(seed: int, B: int = 2, N: int = 14, F: int = 12, dtype=torch.float64):
    """Random screen-space triangles (overlapping, some partly off-screen), all in front of the camera."""
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(B, N, 3, generator=g, dtype=dtype)
    v[..., 0] = v[..., 0] * (W + 6) - 3
    v[..., 1] = v[..., 1] * (H + 6) - 3
    v[..., 2] = 0.5 + 1.5 * v[..., 2]
    faces = torch.stack([torch.randperm(N, generator=g)[:3] for _ in range(F)])
    return v, faces


def ref_rasterize(vs, faces, perspective_correct=True, cull=False):
    """Obvious per-pixel loop in float64. Returns face (H,W), depth (H,W), bary (H,W,3), second-best depth."""
    vs = vs.double().tolist()
    faces = faces.tolist()
    face = torch.full((H, W), -1, dtype=torch.long)
    depth = torch.zeros(H, W, dtype=torch.float64)
    bary = torch.zeros(H, W, 3, dtype=torch.float64)
    second = torch.full((H, W), math.inf, dtype=torch.float64)
    for i in range(H):
        for j in range(W):
            px, py = j + 0.5, i + 0.5
            best = math.inf
            for f, (a, b, c) in enumerate(faces):
                (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = vs[a], vs[b], vs[c]
                if min(z0, z1, z2) <= NEAR:
                    continue
                area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
                if area == 0 or (cull and area >= 0):
                    continue
                l0 = ((x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)) / area
                l1 = ((x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)) / area
                l2 = ((x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)) / area
                if min(l0, l1, l2) < 0:
                    continue
                if perspective_correct:
                    q = (l0 / z0, l1 / z1, l2 / z2)
                    z = 1.0 / sum(q)
                    bc = [x * z for x in q]
                else:
                    z = l0 * z0 + l1 * z1 + l2 * z2
                    bc = [l0, l1, l2]
                if z < best:
                    second[i, j] = best
                    best = z
                    face[i, j] = f
                    depth[i, j] = z
                    bary[i, j] = torch.tensor(bc, dtype=torch.float64)
                elif z < second[i, j]:
                    second[i, j] = z
    return face, depth, bary, second


@pytest.mark.parametrize("perspective_correct", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rasterize_matches_reference_loop(seed, perspective_correct):
    v, faces = random_scene(seed)
    frags = rasterize(v, faces, (H, W), perspective_correct=perspective_correct)
    assert frags.face_idx.shape == (2, H, W) and frags.face_idx.dtype == torch.long
    assert (
        frags.bary.shape == (2, H, W, 3) and frags.depth.shape == (2, H, W) and frags.mask.dtype == torch.bool
    )
    for b in range(v.shape[0]):
        face, depth, bary, second = ref_rasterize(v[b], faces, perspective_correct)
        # ignore pixels where two surfaces are (numerically) at the same depth: float32 z-buffer keys
        ok = ~((second - depth).abs() < 1e-5 * depth.clamp_min(1e-9))
        assert ok.float().mean() > 0.95
        assert torch.equal(frags.face_idx[b][ok], face[ok])
        assert torch.equal(frags.mask[b], frags.face_idx[b] >= 0)
        torch.testing.assert_close(frags.depth[b][ok], depth[ok], atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(frags.bary[b][ok], bary[ok], atol=1e-9, rtol=1e-9)
    bg = ~frags.mask
    assert (frags.depth[bg] == 0).all() and (frags.bary[bg] == 0).all()
    assert frags.mask.any() and bg.any()


def test_cull_backfaces_and_near_plane():
    v, faces = random_scene(3)
    v[0, faces[0], 2] = torch.tensor([0.5, -0.2, 0.7], dtype=v.dtype)  # face 0 crosses the camera plane
    frags = rasterize(v, faces, (H, W), cull_backfaces=True)
    assert not (frags.face_idx == 0)[0].any()
    for b in range(2):
        face, _, _, _ = ref_rasterize(v[b], faces, cull=True)
        assert (frags.face_idx[b] == face).float().mean() > 0.97


def test_float32_and_chunking_agree():
    v, faces = random_scene(4, B=3, N=30, F=40)
    ref = rasterize(v, faces, (H, W))
    small = rasterize(v, faces, (H, W), max_pairs=7)  # forces many tile groups
    assert torch.equal(ref.face_idx, small.face_idx)
    torch.testing.assert_close(ref.bary, small.bary)
    f32 = rasterize(v.float(), faces, (H, W))
    assert (f32.face_idx == ref.face_idx).float().mean() > 0.99


def grid_mesh(n: int, origin: float, step: float, z: float = 1.0):
    """A (n+1)^2-vertex grid of 2n^2 triangles with alternating diagonals (vertices may hit pixel centres)."""
    ii, jj = torch.meshgrid(torch.arange(n + 1), torch.arange(n + 1), indexing="ij")
    verts = torch.stack(
        [origin + jj * step, origin + ii * step, torch.full_like(ii, z, dtype=torch.float64)], -1
    )
    verts = verts.reshape(-1, 3).double()
    faces = []
    for i in range(n):
        for j in range(n):
            a, b, c, d = (
                i * (n + 1) + j,
                i * (n + 1) + j + 1,
                (i + 1) * (n + 1) + j + 1,
                (i + 1) * (n + 1) + j,
            )
            faces += [[a, b, c], [a, c, d]] if (i + j) % 2 == 0 else [[a, b, d], [b, c, d]]
    return verts, torch.tensor(faces)


@pytest.mark.parametrize("origin,step", [(2.5, 3.0), (2.0, 2.0), (3.5, 1.5)])
def test_tie_rule_covers_each_pixel_exactly_once(origin, step):
    """Vertices and edges through pixel centres: every interior pixel belongs to exactly one triangle."""
    verts, faces = grid_mesh(5, origin, step)
    # duplicate vertices of every other triangle (as at UV seams): same coordinates, other indices
    dup = torch.cat([verts, verts])
    faces2 = faces.clone()
    faces2[::2] += verts.shape[0]
    for f_set in (faces, faces2):
        count = torch.zeros(H, W, dtype=torch.long)
        for f in range(f_set.shape[0]):
            count += rasterize(dup[None], f_set[f : f + 1], (H, W)).mask[0].long()
        lo, hi = origin, origin + 5 * step
        c = torch.arange(W) + 0.5
        r = torch.arange(H) + 0.5
        interior = ((r > lo) & (r < hi))[:, None] & ((c > lo) & (c < hi))[None, :]
        assert (count[interior] == 1).all()
        assert (count <= 1).all()
        whole = rasterize(dup[None], f_set, (H, W))
        assert whole.mask[0][interior].all()


def test_uv_space_rasterisation():
    """x,y = uv * size, constant z, no perspective correction: interpolated uv = pixel centre / size."""
    S = 12
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    vs = torch.cat([uv * S, torch.ones(5, 1, dtype=torch.float64)], -1)[None]
    frags = rasterize(vs, faces, (S, S), perspective_correct=False)
    assert frags.mask.all()
    out = interpolate(uv, faces, frags)[0]
    centres = (torch.arange(S, dtype=torch.float64) + 0.5) / S
    torch.testing.assert_close(out[..., 0], centres[None, :].expand(S, S))
    torch.testing.assert_close(out[..., 1], centres[:, None].expand(S, S))


def test_interpolate_matches_loop_and_seams():
    v, faces = random_scene(5)
    frags = rasterize(v, faces, (H, W))
    g = torch.Generator().manual_seed(0)
    attr = torch.rand(2, v.shape[1], 4, generator=g, dtype=torch.float64)
    out = interpolate(attr, faces, frags)
    # per-corner attributes (like face_uvs into uvs): a separate attribute table indexed per face corner
    corner_attr = torch.rand(3 * faces.shape[0], 2, generator=g, dtype=torch.float64)
    faces_attr = torch.arange(3 * faces.shape[0]).view(-1, 3)
    out_c = interpolate(corner_attr, faces_attr, frags)
    assert out.shape == (2, H, W, 4) and out_c.shape == (2, H, W, 2)
    for b in range(2):
        for i in range(H):
            for j in range(W):
                f = int(frags.face_idx[b, i, j])
                if f < 0:
                    assert (out[b, i, j] == 0).all() and (out_c[b, i, j] == 0).all()
                    continue
                w = frags.bary[b, i, j]
                exp = sum(w[k] * attr[b, faces[f, k]] for k in range(3))
                exp_c = sum(w[k] * corner_attr[faces_attr[f, k]] for k in range(3))
                torch.testing.assert_close(out[b, i, j], exp)
                torch.testing.assert_close(out_c[b, i, j], exp_c)
    shared = interpolate(attr[0], faces, frags)
    torch.testing.assert_close(shared[0], out[0])


# ----------------------------------------------------------------------------------------------- cameras


def test_intrinsics_and_principal_point():
    K = intrinsics_from_fov(torch.tensor([30.0, 60.0]), 48, 64)
    assert K.shape == (2, 3, 3)
    torch.testing.assert_close(K[:, 0, 2], torch.tensor([32.0, 32.0]))
    torch.testing.assert_close(K[:, 1, 2], torch.tensor([24.0, 24.0]))
    torch.testing.assert_close(K[0, 1, 1], torch.tensor(24.0 / math.tan(math.radians(15.0))))
    K2 = intrinsics(100.0, 110.0, 30.0, 20.0)
    assert K2.shape == (1, 3, 3) and K2[0, 1, 1] == 110.0
    R = torch.eye(3)[None].repeat(2, 1, 1)
    t = torch.tensor([[0.0, 0.0, 0.5], [0.1, 0.0, 1.0]])
    cams = Cameras(K, R, t, (48, 64))
    pts = torch.tensor([[[0.0, 0.0, 0.3]], [[-0.1, 0.0, 2.0]]])  # on the principal axis of each camera
    pix = cams.project(pts)
    assert pix.shape == (2, 1, 2)
    torch.testing.assert_close(pix[:, 0], K[:, :2, 2], atol=1e-4, rtol=0)
    scr = cams.screen(pts)
    torch.testing.assert_close(scr[:, 0, 2], torch.tensor([0.8, 3.0]))


def test_look_at_orientation():
    eye = torch.tensor([[0.0, 0.0, 0.6], [0.6, 0.0, 0.0]])
    R, t = look_at(eye, torch.zeros(2, 3), torch.tensor([[0.0, 1.0, 0.0]] * 2))
    assert R.shape == (2, 3, 3) and t.shape == (2, 3)
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(2))
    cams = Cameras(intrinsics_from_fov(20.0, 64, 64), R, t, (64, 64))
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.1, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 0.1]])
    pix = cams.project(pts[None].expand(2, -1, -1))
    X = cams.transform(pts[None].expand(2, -1, -1))
    torch.testing.assert_close(pix[:, 0], torch.full((2, 2), 32.0), atol=1e-4, rtol=0)  # target at centre
    torch.testing.assert_close(X[:, 0, 2], torch.full((2,), 0.6))  # depth = distance
    assert (pix[:, 1, 1] < 31.0).all()  # world up -> image up (smaller y)
    assert pix[0, 2, 0] > 33.0  # front view: world +x on the image right
    assert pix[1, 3, 0] < 31.0  # side view from +x: world +z appears on the left
    torch.testing.assert_close(cams.centers(), eye)


def test_cameras_broadcast_to_and_index():
    K = intrinsics_from_fov(25.0, 32, 32)
    R, t = look_at(torch.tensor([[0.0, 0.0, 1.0]] * 3), torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    cams = Cameras(K, R, t, (32, 32))
    assert cams.K.shape == (3, 3, 3) and len(cams) == 3
    assert len(cams[1]) == 1 and len(cams[0:2]) == 2
    c64 = cams.to("cpu", torch.float64)
    assert c64.R.dtype == torch.float64 and c64.image_size == (32, 32)
    assert cams.project(torch.zeros(1, 5, 3)).shape == (3, 5, 2)
