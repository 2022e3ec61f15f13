"""Barycentric interpolation of per-vertex (or per-corner) attributes over rasterised fragments."""

from __future__ import annotations

import torch
from torch import Tensor

from src.render.rasterize import Fragments

__all__ = ["interpolate"]


def interpolate(attr: Tensor, faces_attr: Tensor, frags: Fragments) -> Tensor:
    """Interpolate attributes at the visible surface point of every pixel.

    Only covered pixels are computed; background pixels get 0.

    Args:
        attr: (B,N,C) per-batch or (N,C) / (1,N,C) shared attributes (vertex colours, uvs, normals, ...).
        faces_attr: (F,3) long indices into ``attr`` for each face corner. Usually the vertex faces; for UV
            seams pass the per-corner uv indices (e.g. ``face_uvs`` into ``uvs``). Must have the same F as the
            faces that produced ``frags``.
        frags: output of :func:`src.render.rasterize`.

    Returns:
        (B,H,W,C) interpolated attributes, differentiable w.r.t. ``attr`` and ``frags.bary``.
    """
    B, H, W = frags.face_idx.shape
    if attr.dim() == 2:
        attr = attr[None]
    if attr.dim() != 3:
        raise ValueError(f"attr must be (B,N,C) or (N,C), got {tuple(attr.shape)}")
    if attr.shape[0] not in (1, B):
        raise ValueError(f"attr batch size {attr.shape[0]} does not match the fragments' batch size {B}")
    C = attr.shape[-1]
    pix = frags.covered()
    f = frags.face_idx.reshape(-1)[pix]
    idx = faces_attr.to(device=attr.device, dtype=torch.long)[f]  # (P,3)
    bary = frags.bary.reshape(-1, 3)[pix].to(attr.dtype)  # (P,3)
    if attr.shape[0] == 1:
        vals = attr[0].index_select(0, idx.view(-1))
    else:
        b = torch.div(pix, H * W, rounding_mode="floor")
        N = attr.shape[1]
        vals = attr.reshape(B * N, C).index_select(0, (idx + (b * N)[:, None]).view(-1))
    vals = vals.view(-1, 3, C)  # (P,3,C)
    out = bary[:, 0:1] * vals[:, 0] + bary[:, 1:2] * vals[:, 1] + bary[:, 2:3] * vals[:, 2]
    return attr.new_zeros(B * H * W, C).index_put((pix,), out).view(B, H, W, C)
