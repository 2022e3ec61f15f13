"""Normals and simple shading models (Lambert, 2nd-order spherical-harmonics irradiance).

Spherical harmonics normalisation: the 9 real SH basis functions are the standard orthonormal ones
(``Y_00 = 0.282095``, ``Y_1m = 0.488603 * (y, z, x)``, ``Y_2m = 1.092548 xy, 1.092548 yz,
0.315392 (3z^2 - 1), 1.092548 xz, 0.546274 (x^2 - y^2)``), in that order (m = -l..l). ``sh`` holds the SH
coefficients ``L_lm`` of the incident *radiance* (per colour channel). The shading returned is the
Lambertian exit radiance for unit albedo::

    shading(n) = (1 / pi) * sum_lm A_l * L_lm * Y_lm(n),   A_0 = pi, A_1 = 2 pi / 3, A_2 = pi / 4

(Ramamoorthi & Hanrahan 2001; ``A_l`` is the clamped-cosine convolution). So the effective per-band factors
are 1, 2/3, 1/4, and a uniform environment of radiance ``c`` (``L_00 = c * sqrt(4 pi)``, other terms 0) gives
``shading = c``. Use :func:`sh_ambient` to build such a coefficient set. The colour is ``albedo * shading``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "SH_BASIS_CONST",
    "face_normals",
    "lambert",
    "sh_ambient",
    "sh_basis",
    "sh_shading",
    "vertex_normals",
]

# Orthonormal real SH constants, and the same multiplied by A_l / pi (Lambertian convolution, radiance out).
SH_BASIS_CONST = (
    0.5 / math.sqrt(math.pi),
    math.sqrt(3.0 / (4 * math.pi)),
    math.sqrt(3.0 / (4 * math.pi)),
    math.sqrt(3.0 / (4 * math.pi)),
    0.5 * math.sqrt(15.0 / math.pi),
    0.5 * math.sqrt(15.0 / math.pi),
    0.25 * math.sqrt(5.0 / math.pi),
    0.5 * math.sqrt(15.0 / math.pi),
    0.25 * math.sqrt(15.0 / math.pi),
)
_BAND_FACTOR = (1.0, 2.0 / 3, 2.0 / 3, 2.0 / 3, 0.25, 0.25, 0.25, 0.25, 0.25)  # A_l / pi


def face_normals(verts: Tensor, faces: Tensor, normalize: bool = True) -> Tensor:
    """Face normals ``(v1 - v0) x (v2 - v0)``.

    Args:
        verts: (B,V,3).
        faces: (F,3) long.
        normalize: return unit normals (else the length is twice the face area).

    Returns:
        (B,F,3).
    """
    B = verts.shape[0]
    fv = verts.index_select(1, faces.reshape(-1).long()).view(B, -1, 3, 3)
    n = torch.linalg.cross(fv[:, :, 1] - fv[:, :, 0], fv[:, :, 2] - fv[:, :, 0], dim=-1)
    return F.normalize(n, dim=-1, eps=1e-20) if normalize else n


def vertex_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals (counter-clockwise faces give outward normals).

    Args:
        verts: (B,V,3).
        faces: (F,3) long.

    Returns:
        (B,V,3) unit normals (0 for vertices used by no face).
    """
    faces = faces.long()
    fn = face_normals(verts, faces, normalize=False)  # (B,F,3), |n| = 2 * area
    B, V = verts.shape[:2]
    idx = (faces.reshape(1, -1) + V * torch.arange(B, device=faces.device)[:, None]).reshape(-1)  # (B*F*3,)
    vals = fn[:, :, None, :].expand(-1, -1, 3, -1).reshape(-1, 3)
    n = verts.new_zeros(B * V, 3).index_add(0, idx, vals)
    return F.normalize(n.view(B, V, 3), dim=-1, eps=1e-20)


def lambert(
    normals: Tensor,
    light_dir: Tensor,
    ambient: float | Tensor = 0.3,
    diffuse: float | Tensor = 0.7,
) -> Tensor:
    """Lambertian shading with a directional light.

    Args:
        normals: (B,H,W,3) unit normals (any space; ``light_dir`` must be in the same space).
        light_dir: (B,3) or (3,) direction *towards* the light (normalised internally).
        ambient: scalar, (B,) or (B,3) ambient intensity/colour.
        diffuse: scalar, (B,) or (B,3) diffuse intensity/colour.

    Returns:
        (B,H,W,1) ``ambient + diffuse * max(0, n . l)``, or (B,H,W,3) if ambient or diffuse are colours.
    """
    light_dir = F.normalize(light_dir.to(normals).reshape(-1, 3), dim=-1)
    cos = (normals * light_dir[:, None, None, :]).sum(-1, keepdim=True).clamp_min(0.0)

    def per_batch(x: float | Tensor) -> Tensor:
        x = torch.as_tensor(x, dtype=normals.dtype, device=normals.device)
        if x.dim() == 0:
            return x.reshape(1, 1, 1, 1)
        if x.dim() == 1:
            return x.reshape(-1, 1, 1, 1)
        return x.reshape(x.shape[0], 1, 1, -1)

    return per_batch(ambient) + per_batch(diffuse) * cos


def sh_basis(normals: Tensor, lambertian: bool = True) -> Tensor:
    """The 9 real SH basis functions at unit directions.

    Args:
        normals: (...,3) unit vectors.
        lambertian: fold in the clamped-cosine factors ``A_l / pi`` (see module docstring).

    Returns:
        (...,9).
    """
    x, y, z = normals.unbind(-1)
    one = torch.ones_like(x)
    basis = torch.stack([one, y, z, x, x * y, y * z, 3 * z * z - 1, x * z, x * x - y * y], dim=-1)
    const = torch.tensor(SH_BASIS_CONST, dtype=normals.dtype, device=normals.device)
    if lambertian:
        const = const * torch.tensor(_BAND_FACTOR, dtype=normals.dtype, device=normals.device)
    return basis * const


def sh_shading(normals: Tensor, sh: Tensor) -> Tensor:
    """Irradiance-based shading from 2nd-order SH lighting (normalisation in the module docstring).

    Args:
        normals: (B,H,W,3) unit normals (background pixels are meaningless; mask them afterwards).
        sh: (B,9,C) SH coefficients of the incident radiance per channel (C usually 3), or (9,C).

    Returns:
        (B,H,W,C) shading (multiply by albedo).
    """
    if sh.dim() == 2:
        sh = sh[None]
    basis = sh_basis(normals)  # (B,H,W,9)
    return torch.einsum("bhwk,bkc->bhwc", basis, sh.to(normals.dtype))


def sh_ambient(value: float | Tensor, batch_size: int = 1, channels: int = 3) -> Tensor:
    """SH coefficients of a uniform environment that shades every normal with ``value``.

    Args:
        value: scalar or (C,) radiance.
        batch_size: B.
        channels: C (ignored if ``value`` is a (C,) tensor).

    Returns:
        (B,9,C) coefficients with only ``L_00`` non-zero.
    """
    value = torch.as_tensor(value, dtype=torch.get_default_dtype())
    if value.dim() == 1:
        channels = value.shape[0]
    sh = torch.zeros(batch_size, 9, channels, dtype=value.dtype, device=value.device)
    sh[:, 0, :] = value / SH_BASIS_CONST[0]
    return sh
