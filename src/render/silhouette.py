"""Soft (SoftRas-style) silhouettes with gradients at the mesh boundary.

``alpha = 1 - prod_t (1 - sigmoid(-d_t / sigma))`` where ``d_t`` is the signed 2D distance in pixels from the
pixel centre to triangle ``t`` (negative inside). Computed as ``1 - exp(sum_t logsigmoid(d_t / sigma))`` for
numerical stability.

To stay cheap the soft value is evaluated only in a band of ``band`` pixels (Chebyshev distance) around the
boundary of the hard coverage mask, and only with triangles whose bounding box grown by ``band`` pixels
touches the band (an O(1) summed-area-table test per triangle) and whose distance to the pixel is below
``band`` pixels. Everywhere else alpha equals the hard mask.

SoftRas properties to keep in mind: (1) pixel centres in the band near an *interior* edge of a coarse mesh get
alpha below 1 (a pixel on the shared edge of two large triangles gets 0.75). (2) The product runs over all
nearby triangles, front and back, so with many triangles per pixel (a dense mesh at low resolution) the soft
edge moves outwards: e.g. the full ICT-FaceKit head (52k triangles) at 64 px with sigma = 0.5 has alpha
~1.0, ~0.6 and ~0.08 one, two and three pixels outside the hard silhouette (then the cutoff drops it to 0).
Choose ``sigma`` with the triangle density in mind. The cost grows with the number of (band pixel, triangle
within ``band`` px) pairs, so it is highest for dense meshes at low resolution.

The distances are computed without autograd and their gradient w.r.t. the vertices is supplied analytically
(``d = |p - c|`` with ``c = a + t (b - a)`` the closest point on the closest edge ``ab``:
``dd/da = -(1 - t) u``, ``dd/db = -t u``, ``u = (p - c) / d``, negated inside), which keeps the backward
pass cheap.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from src.render.rasterize import (
    DEFAULT_MAX_PAIRS,
    face_bboxes,
    gather_faces,
    rasterize,
    tile_groups,
    valid_faces,
)

__all__ = ["boundary_band", "signed_distance", "soft_silhouette"]

_EPS_D2 = 1e-12  # d = sqrt(d^2 + eps): finite gradients on edges


def boundary_band(mask: Tensor, radius: int) -> Tensor:
    """Pixels within Chebyshev distance ``radius`` of a mask transition.

    Args:
        mask: (B,H,W) bool or float coverage.
        radius: band half-width in pixels.

    Returns:
        (B,H,W) bool, dilation minus erosion of the mask with a (2r+1)^2 square (separable max-pooling).
    """
    m = mask.float()[:, None]
    k, r = 2 * radius + 1, radius

    def pool(x: Tensor) -> Tensor:
        x = F.max_pool2d(x, (1, k), stride=1, padding=(0, r))
        return F.max_pool2d(x, (k, 1), stride=1, padding=(r, 0))

    return (pool(m) != -pool(-m))[:, 0]


def signed_distance(v: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """Signed distance from points to triangles (negative inside), both windings; plain autograd reference.

    Args:
        v: (P,3,>=2) triangle vertices, x and y in pixels.
        px, py: (P,) query points.

    Returns:
        (P,) signed Euclidean distance in pixels, differentiable w.r.t. ``v``.
    """
    a = v[..., :2]
    e = a.roll(-1, dims=1) - a  # (P,3,2) edges v0->v1, v1->v2, v2->v0
    p = torch.stack([px, py], dim=-1)[:, None, :]
    ap = p - a
    t = ((ap * e).sum(-1) / (e * e).sum(-1).clamp_min(1e-20)).clamp(0.0, 1.0)
    diff = ap - t[..., None] * e
    d2 = (diff * diff).sum(-1).amin(1)
    cross = e[..., 0] * ap[..., 1] - e[..., 1] * ap[..., 0]  # (P,3)
    inside = (cross >= 0).all(1) | (cross <= 0).all(1)
    d = torch.sqrt(d2 + _EPS_D2)
    return torch.where(inside, -d, d)


@torch.no_grad()
def _distance_and_grads(
    xs: list[Tensor], ys: list[Tensor], px: Tensor, py: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Signed distance and its derivatives w.r.t. the two endpoints of the closest edge.

    Args:
        xs, ys: three (P,) tensors each, the triangle vertices' x and y.
        px, py: (P,) points.

    Returns:
        d (P,) signed distance; k (P,) long closest edge (from vertex k to k+1 mod 3);
        ga, gb (P,2) derivatives of d w.r.t. the (x, y) of vertex k and of vertex k+1.
    """
    best_d2 = best_t = best_dx = best_dy = k = None
    crosses = []
    for e in range(3):
        ax, ay, bx, by = xs[e], ys[e], xs[(e + 1) % 3], ys[(e + 1) % 3]
        ex, ey = bx - ax, by - ay
        apx, apy = px - ax, py - ay
        t = ((apx * ex + apy * ey) / (ex * ex + ey * ey).clamp_min(1e-20)).clamp_(0.0, 1.0)
        dx, dy = apx - t * ex, apy - t * ey  # p - c
        d2 = dx * dx + dy * dy
        crosses.append(ex * apy - ey * apx)
        if e == 0:
            best_d2, best_t, best_dx, best_dy = d2, t, dx, dy
            k = torch.zeros_like(px, dtype=torch.long)
        else:
            better = d2 < best_d2
            best_d2 = torch.where(better, d2, best_d2)
            best_t = torch.where(better, t, best_t)
            best_dx = torch.where(better, dx, best_dx)
            best_dy = torch.where(better, dy, best_dy)
            k = torch.where(better, e, k)
    c0, c1, c2 = crosses
    inside = ((c0 >= 0) & (c1 >= 0) & (c2 >= 0)) | ((c0 <= 0) & (c1 <= 0) & (c2 <= 0))
    d = torch.sqrt(best_d2 + _EPS_D2)
    sign = torch.where(inside, -1.0, 1.0).to(d.dtype)
    u = torch.stack([best_dx, best_dy], dim=1) * (sign / d)[:, None]  # sign * (p - c) / d
    ga = -(1.0 - best_t)[:, None] * u
    gb = -best_t[:, None] * u
    return d * sign, k, ga, gb


class _PairDistance(torch.autograd.Function):
    """Identity on precomputed distances whose vertex gradients are known (see module docstring)."""

    @staticmethod
    def forward(ctx, verts: Tensor, d: Tensor, ia: Tensor, ib: Tensor, ga: Tensor, gb: Tensor) -> Tensor:
        ctx.save_for_backward(ia, ib, ga, gb)
        ctx.verts_shape = verts.shape
        return d.clone()

    @staticmethod
    def backward(ctx, grad_d: Tensor):
        ia, ib, ga, gb = ctx.saved_tensors
        B, N, D = ctx.verts_shape
        g = grad_d.new_zeros(B * N, 2)
        g.index_add_(0, ia, ga * grad_d[:, None])
        g.index_add_(0, ib, gb * grad_d[:, None])
        g = F.pad(g, (0, D - 2)).view(B, N, D)
        return g, None, None, None, None, None


def soft_silhouette(
    verts_screen: Tensor,
    faces: Tensor,
    image_size: tuple[int, int],
    sigma: float = 0.5,
    mask: Tensor | None = None,
    band: int | None = None,
    near: float = 1e-3,
    cull_backfaces: bool = False,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    face_mask: Tensor | None = None,
) -> Tensor:
    """Soft coverage of a mesh, differentiable w.r.t. the vertex positions.

    Args:
        verts_screen: (B,N,3) screen-space vertices (x, y pixels; z camera depth), as for
            :func:`src.render.rasterize`. Only x, y receive gradients.
        faces: (F,3) long.
        image_size: (H, W).
        sigma: sharpness in pixels (sigmoid scale of the signed distance).
        mask: (B,H,W) hard coverage mask of the same mesh (e.g. ``Fragments.mask``); rasterised if None.
        band: half-width in pixels of the band around the mask boundary where alpha is soft, and the distance
            beyond which triangles are ignored; default ``ceil(4 * sigma) + 1``.
        near: faces with any vertex at ``z <= near`` are ignored.
        cull_backfaces: ignore back faces (see :func:`src.render.rasterize`).
        max_pairs: bound on the (triangle, pixel) pairs processed at once.
        face_mask: optional (B,F) bool of the triangles that may contribute (e.g. those visible in the
            hard rasterisation: the silhouette of a mesh is formed by its visible triangles, and skipping
            occluded ones makes dense meshes at low resolution several times cheaper).

    Returns:
        (B,H,W) alpha in [0,1]; equal to the hard mask outside the band.
    """
    if verts_screen.dtype not in (torch.float32, torch.float64):
        args = (faces, image_size, sigma, mask, band, near, cull_backfaces, max_pairs)
        return soft_silhouette(verts_screen.float(), *args).to(verts_screen.dtype)
    H, W = int(image_size[0]), int(image_size[1])
    B, N = verts_screen.shape[:2]
    r = int(math.ceil(4 * sigma)) + 1 if band is None else int(band)
    faces = faces.to(device=verts_screen.device, dtype=torch.long)
    if mask is None:
        with torch.no_grad():
            mask = rasterize(verts_screen, faces, (H, W), False, near, cull_backfaces, max_pairs).mask
    # "+ empty sum": keeps the output attached to the graph (zero gradients) when nothing is soft
    hard = mask.to(verts_screen.dtype) + verts_screen.reshape(-1)[:0].sum()
    if r <= 0:
        return hard
    inband = boundary_band(mask, r)  # (B,H,W)
    if not bool(inband.any()):
        return hard

    with torch.no_grad():
        device, dtype = verts_screen.device, verts_screen.dtype
        fv = gather_faces(verts_screen.detach(), faces)  # (B,F,3,3)
        Fn = fv.shape[1]
        valid, area2 = valid_faces(fv, near, cull_backfaces)
        x0, y0, nx, ny = face_bboxes(fv, (H, W), valid, margin=float(r))
        # Summed-area table of the band: does the grown bbox contain any band pixel?
        sat = F.pad(inband.int().cumsum(1).cumsum(2), (1, 0, 1, 0)).view(B, -1)  # (B,(H+1)*(W+1))
        x1, y1, W1 = x0 + nx, y0 + ny, W + 1

        def at(yy: Tensor, xx: Tensor) -> Tensor:
            return sat.gather(1, yy * W1 + xx)

        hits = at(y1, x1) - at(y0, x1) - at(y1, x0) + at(y0, x0)
        cand = (hits > 0) & (nx > 0) & (ny > 0)
        if face_mask is not None:
            cand &= face_mask.to(cand.device).view(cand.shape)
        sel = cand.view(-1).nonzero().squeeze(1)
        b = torch.div(sel, Fn, rounding_mode="floor")
        x0, y0 = x0.view(-1).index_select(0, sel), y0.view(-1).index_select(0, sel)
        base = b * (H * W)
        tv = fv.view(-1, 3, 3).index_select(0, sel)
        # Edge lines normalised to unit normals, positive inside: max_e(-w_e) lower-bounds the distance of an
        # outside point, so pixels with max_e(-w_e) >= r can be skipped before computing exact distances.
        pa = tv.index_select(1, torch.tensor([1, 2, 0], device=device))
        pb = tv.index_select(1, torch.tensor([2, 0, 1], device=device))
        sgn = torch.sign(area2.view(-1).index_select(0, sel))[:, None]
        dx, dy = pb[..., 0] - pa[..., 0], pb[..., 1] - pa[..., 1]
        inv_len = sgn / torch.sqrt(dx * dx + dy * dy).clamp_min(1e-20)
        # coefficients of -w (negative inside)
        A, Bc = dy * inv_len, -dx * inv_len
        C = -(A * pa[..., 0] + Bc * pa[..., 1])
        band_flat = inband.view(-1)
        keep_tri, keep_pix = [], []
        for ids, th, tw in tile_groups(nx.view(-1)[sel], ny.view(-1)[sel], max_pairs):
            col = x0[ids, None] + torch.arange(tw, device=device)  # (Tc,tw)
            row = y0[ids, None] + torch.arange(th, device=device)  # (Tc,th)
            # pixel centres; NaN beyond the image, which makes the comparison below false
            px = torch.where(col < W, col.to(dtype) + 0.5, torch.nan)
            py = torch.where(row < H, row.to(dtype) + 0.5, torch.nan)
            Ai, Bi, Ci = A[ids], Bc[ids], C[ids]
            out = None
            for e in range(3):
                nw = (Bi[:, e, None] * py + Ci[:, e, None])[:, :, None] + (Ai[:, e, None] * px)[:, None, :]
                out = nw if out is None else torch.maximum(out, nw)  # maximum propagates NaN
            ok = out < r
            pix = (base[ids, None] + row.clamp(max=H - 1) * W)[:, :, None] + col.clamp(max=W - 1)[:, None, :]
            ok &= band_flat[pix]
            idx = ok.view(-1).nonzero().squeeze(1)
            keep_tri.append(ids[torch.div(idx, th * tw, rounding_mode="floor")])
            keep_pix.append(pix.view(-1)[idx])
        if not keep_tri:
            return hard
        t = torch.cat(keep_tri)  # index into sel
        pix = torch.cat(keep_pix)
        rem = pix - base[t]
        row = torch.div(rem, W, rounding_mode="floor")
        col = rem - row * W
        coords = tv[..., :2].permute(2, 1, 0).contiguous()  # (2,3,T): x/y of each vertex, contiguous rows
        xs = [coords[0, i].index_select(0, t) for i in range(3)]
        ys = [coords[1, i].index_select(0, t) for i in range(3)]
        d, k, ga, gb = _distance_and_grads(xs, ys, col.to(dtype) + 0.5, row.to(dtype) + 0.5)
        far = d >= r  # beyond the cutoff: contributes nothing (masked rather than compacted)
        vflat = (faces.index_select(0, sel - b * Fn) + (b * N)[:, None]).view(-1)  # (T*3,) flat vertex ids
        ia = vflat.index_select(0, t * 3 + k)
        ib = vflat.index_select(0, t * 3 + (k + 1) % 3)

    d = _PairDistance.apply(verts_screen, d, ia, ib, ga, gb)
    contrib = F.logsigmoid(d / sigma).masked_fill(far, 0.0)
    acc = verts_screen.new_zeros(B * H * W).index_add(0, pix, contrib)
    soft = -torch.expm1(acc).view(B, H, W)
    return torch.where(inband, soft, hard)
