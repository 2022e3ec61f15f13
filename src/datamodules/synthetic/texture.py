"""A procedural albedo and label texture for the synthetic subject, baked into the head model's UV atlas.

Every texel is coloured from its canonical 3D position on the neutral mesh and its material: skin with
low-frequency variation and flushed cheeks, hair above a hairline and at the back, brows along the
brow landmarks, lips inside the outer-lip polygon, sclera and an iris with pupil and streaks, teeth,
gums. A label texture (SEG_LABELS ids) is baked alongside so segmentation ground truth comes for free.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from src.core.layout import SEG_LABELS
from src.render import interpolate
from src.render.uv import grow_texture, rasterize_uv

L = {name: i for i, name in enumerate(SEG_LABELS)}


def _noise3(p: torch.Tensor, rng: np.random.Generator, scale_m: float, n: int = 16) -> torch.Tensor:
    """Smooth 3D noise (random Fourier features), roughly in [-1,1]. p (P,3) metres -> (P,)."""
    w = torch.from_numpy(rng.normal(0, 1.0 / scale_m, (n, 3))).to(p)
    phase = torch.from_numpy(rng.uniform(0, 2 * np.pi, n)).to(p)
    return torch.sin(p @ w.T + phase).sum(-1) / np.sqrt(n / 2)


def _point_in_polygon(xy: torch.Tensor, poly: torch.Tensor) -> torch.Tensor:
    """Even-odd rule. xy (P,2), poly (K,2) -> (P,) bool."""
    inside = torch.zeros(xy.shape[0], dtype=torch.bool, device=xy.device)
    x, y = xy[:, 0], xy[:, 1]
    for k in range(poly.shape[0]):
        (x1, y1), (x2, y2) = poly[k], poly[(k + 1) % poly.shape[0]]
        crosses = (y1 > y) != (y2 > y)
        xint = x1 + (y - y1) * (x2 - x1) / (y2 - y1 + 1e-12)
        inside ^= crosses & (x < xint)
    return inside


def _dist_to_polyline(xy: torch.Tensor, line: torch.Tensor) -> torch.Tensor:
    """Distance from points (P,2) to a polyline (K,2). Returns (P,)."""
    a, b = line[:-1], line[1:]  # (K-1,2)
    ab = b - a
    t = (((xy[:, None] - a[None]) * ab[None]).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0, 1)
    closest = a[None] + t[..., None] * ab[None]
    return (xy[:, None] - closest).norm(dim=-1).min(dim=1).values


def paint(
    pos: torch.Tensor,
    material: list[str],
    mat_idx: torch.Tensor,
    lmk: torch.Tensor,
    iris_centers: dict[str, torch.Tensor],
    rng: np.random.Generator,
    mouth_socket: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Albedo and label of surface points.

    Args:
        pos: (P,3) canonical positions in metres (+y up, +z forward).
        material: material names.
        mat_idx: (P,) long material index per point.
        lmk: (68,3) neutral landmark positions.
        iris_centers: {"M_IrisLeft": (3,), "M_IrisRight": (3,)} front-most iris points.
        rng: random generator (skin tone, eye colour, noise).
        mouth_socket: (P,) bool, points on the head model's mouth socket (painted as mouth interior).

    Returns:
        albedo (P,3) in [0,1], labels (P,) long.
    """
    P = pos.shape[0]
    x, y, z = pos.unbind(-1)
    name = np.array(material)[mat_idx.cpu().numpy()]
    is_mat = {m: torch.from_numpy(name == m).to(pos.device) for m in material}

    skin_tone = torch.tensor(rng.choice([[0.87, 0.68, 0.56], [0.78, 0.57, 0.44], [0.62, 0.43, 0.32]]))
    skin_tone = (skin_tone * rng.uniform(0.95, 1.05)).to(pos)
    hair_col = torch.tensor(rng.choice([[0.18, 0.12, 0.08], [0.35, 0.22, 0.12], [0.08, 0.07, 0.07]])).to(pos)
    iris_col = torch.tensor(rng.choice([[0.25, 0.42, 0.62], [0.38, 0.24, 0.12], [0.3, 0.45, 0.3]])).to(pos)

    albedo = skin_tone.expand(P, 3).clone()
    albedo = albedo * (1 + 0.06 * _noise3(pos, rng, 0.03)[:, None] + 0.02 * _noise3(pos, rng, 0.004)[:, None])
    for cheek in (
        lmk[2] * 0.4 + lmk[48] * 0.3 + lmk[31] * 0.3,
        lmk[14] * 0.4 + lmk[54] * 0.3 + lmk[35] * 0.3,
    ):
        w = torch.exp(-((pos - cheek) ** 2).sum(-1) / (2 * 0.018**2))
        albedo = albedo * (1 - 0.12 * w[:, None]) + 0.12 * w[:, None] * torch.tensor([0.85, 0.4, 0.4]).to(pos)
    labels = torch.full((P,), L["skin"], dtype=torch.long, device=pos.device)

    head = is_mat["M_Face"] | is_mat["M_BackHead"]
    brow_y = lmk[17:27, 1].mean()
    chin_y, ear_z = lmk[8, 1], 0.5 * (lmk[0, 2] + lmk[16, 2])
    hairline = brow_y + 0.05 + 0.006 * _noise3(pos, rng, 0.02)
    back_hair = (z < ear_z - 0.015) & (y > lmk[33, 1] - 0.02 + 0.01 * (ear_z - z) / 0.1)
    hair = head & ((y > hairline) | back_hair)
    neck = head & ~hair & (y < chin_y - 0.004) & ((z < lmk[8, 2] - 0.01) | (y < chin_y - 0.02))
    labels[neck] = L["neck"]
    albedo[neck] *= 0.95
    strands = 1 + 0.15 * _noise3(pos * torch.tensor([6.0, 1.0, 6.0]).to(pos), rng, 0.02)[:, None]
    albedo[hair] = (hair_col * strands)[hair]
    labels[hair] = L["hair"]

    front = z > lmk[27, 2] - 0.035
    for line in (lmk[17:22, :2], lmk[22:27, :2]):
        d = _dist_to_polyline(pos[:, :2], line + torch.tensor([0.0, 0.002]).to(pos))
        brow = head & front & ~hair & (d < 0.0045)
        albedo[brow] = hair_col * 1.1
        labels[brow] = L["brows"]
    lips = head & (z > lmk[51, 2] - 0.02) & _point_in_polygon(pos[:, :2], lmk[48:60, :2])
    albedo[lips] = albedo[lips] * torch.tensor([0.95, 0.55, 0.55]).to(pos)
    labels[lips] = L["lips"]

    if mouth_socket is not None:
        albedo[mouth_socket] = torch.tensor([0.35, 0.12, 0.13]).to(pos)
        labels[mouth_socket] = L["mouth_interior"]
    gums = is_mat["M_GumsTongue"]
    albedo[gums] = torch.tensor([0.62, 0.24, 0.27]).to(pos)
    labels[gums] = L["mouth_interior"]
    teeth = is_mat["M_Teeth"]
    albedo[teeth] = torch.tensor([0.92, 0.9, 0.82]).to(pos)
    labels[teeth] = L["teeth"]
    sclera = is_mat["M_ScleraLeft"] | is_mat["M_ScleraRight"]
    albedo[sclera] = torch.tensor([0.93, 0.91, 0.88]).to(pos)
    labels[sclera] = L["eyes"]
    lashes = is_mat["M_EyeLashes"]
    albedo[lashes] = hair_col * 0.6
    labels[lashes] = L["eyes"]
    for m, c in iris_centers.items():
        sel = is_mat[m]
        r = (pos[:, :2] - c[:2]).norm(dim=-1)
        ang = torch.atan2(pos[:, 1] - c[1], pos[:, 0] - c[0])
        streak = 1 + 0.25 * torch.sin(ang * 23) * torch.sin(ang * 7 + 1.0)
        col = iris_col * streak[:, None] * (0.7 + 0.3 * (r / 0.006).clamp(0, 1))[:, None]
        col = torch.where((r < 0.0019)[:, None], torch.tensor([0.03, 0.03, 0.03]).to(pos), col)
        col = torch.where((r > 0.0058)[:, None], torch.tensor([0.93, 0.91, 0.88]).to(pos), col)
        # the sclera mesh also covers the cornea in front of the iris: paint the iris through it
        cornea = is_mat[m.replace("Iris", "Sclera")] & (r < 0.0058) & (z > c[2] - 0.004)
        sel = sel | cornea
        albedo[sel] = col[sel]
        labels[sel] = L["eyes"]
    return albedo.clamp(0, 1), labels


def bake_texture(
    headmodel,
    identity: torch.Tensor,
    size: int = 512,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bake the procedural albedo and labels into the head model's UV atlas.

    Args:
        headmodel: an ICT head model (uses uvs, face_uvs, faces, face_material, material_names).
        identity: (n_identity,) identity coefficients of the subject.
        size: texture resolution (square).
        seed: random seed.

    Returns:
        albedo (3,size,size) float in [0,1] and labels (size,size) long; texture row 0 is v = 1.
    """
    rng = np.random.default_rng(seed + 1000)
    with torch.no_grad():
        verts = headmodel.canonical(identity[None], torch.zeros(1, headmodel.n_expression))  # (1,V,3)
        lmk = headmodel.landmarks(verts)[0]
        frags = rasterize_uv(headmodel.uvs, headmodel.face_uvs, size)
        pos = interpolate(verts, headmodel.faces, frags)[0]  # (H,W,3)
        valid = frags.face_idx[0] >= 0
        fidx = frags.face_idx[0][valid]
        mats = headmodel.face_material[fidx]
        names = list(headmodel.material_names)
        iris = {}
        for m in ("M_IrisLeft", "M_IrisRight"):
            faces_m = headmodel.faces[headmodel.face_material == names.index(m)].reshape(-1)
            pts = verts[0, faces_m]
            iris[m] = pts[pts[:, 2].argmax()]
        socket = None
        if "mouth_socket" in headmodel.region_names:
            socket = headmodel.face_regions[fidx] == headmodel.region_names.index("mouth_socket")
        col, lab = paint(pos[valid], names, mats, lmk, iris, rng, socket)
        albedo = torch.zeros(3, size, size)
        labels = torch.zeros(size, size, dtype=torch.long)
        albedo[:, valid] = col.T
        labels[valid] = lab
        albedo, labels = grow_texture(albedo, valid, 4), _grow_labels(labels, valid, 4)
    return albedo, labels


def _grow_labels(labels: torch.Tensor, valid: torch.Tensor, iterations: int) -> torch.Tensor:
    """Grow label ids into empty neighbours (largest neighbouring id), like :func:`grow_texture`."""
    v = valid.float()[None, None]
    lab = labels.float()[None, None]
    for _ in range(iterations):
        grow = (F.max_pool2d(v, 3, 1, 1) > 0) & (v == 0)
        lab = torch.where(grow, F.max_pool2d(lab * v, 3, 1, 1), lab)
        v = torch.where(grow, torch.ones_like(v), v)
    return lab[0, 0].long()
