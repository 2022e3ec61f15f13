"""Image-space geometry terms: rendered normals against (pseudo) ground-truth normal maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LAPLACIAN_KERNELS = {
    4: ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0)),
    8: ((1.0, 1.0, 1.0), (1.0, -8.0, 1.0), (1.0, 1.0, 1.0)),
}


def _unit(n: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise (B,3,H,W) vectors along dim 1 (zero vectors stay zero)."""
    return n / n.norm(dim=1, keepdim=True).clamp_min(eps)


def _mask_or_ones(mask: torch.Tensor | None, ref: torch.Tensor) -> torch.Tensor:
    B, _, H, W = ref.shape
    return ref.new_ones(B, 1, H, W) if mask is None else mask.to(ref).expand(B, 1, H, W)


def erode_mask(mask: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Grey-scale erosion (minimum over a (2r+1)^2 window); pixels within ``radius`` of the border become 0.

    Args:
        mask: (B,1,H,W) values in [0,1].
        radius: erosion radius in pixels (>= 0).

    Returns:
        (B,1,H,W) eroded mask.
    """
    if radius <= 0:
        return mask
    inv = F.pad(1.0 - mask, (radius,) * 4, value=1.0)
    return 1.0 - F.max_pool2d(inv, 2 * radius + 1, stride=1)


def normal_consistency(
    rendered_normals: torch.Tensor,
    target_normals: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of ``1 - cos`` between rendered and target normals over a mask.

    Both maps are normalised per pixel first, so the value only depends on directions
    (0 = parallel everywhere, 1 = perpendicular, 2 = opposite).

    Args:
        rendered_normals: (B,3,H,W) rendered normals (any length), same camera frame as the target.
        target_normals: (B,3,H,W) target normals.
        mask: (B,1,H,W) weights in [0,1] (foreground, or face pixels with a normal estimate); None = all.

    Returns:
        () scalar ``sum(mask * (1 - cos)) / sum(mask)``.
    """
    cos = (_unit(rendered_normals) * _unit(target_normals.to(rendered_normals))).sum(1, keepdim=True)
    m = _mask_or_ones(mask, rendered_normals)
    return (m * (1.0 - cos)).sum() / m.sum().clamp_min(1e-8)


def image_laplacian(x: torch.Tensor, connectivity: int = 4) -> torch.Tensor:
    """Per-channel 3x3 discrete Laplacian with zero padding.

    Args:
        x: (B,C,H,W) images.
        connectivity: 4 (``[[0,1,0],[1,-4,1],[0,1,0]]``) or 8 (``[[1,1,1],[1,-8,1],[1,1,1]]``).

    Returns:
        (B,C,H,W); values next to the border see zeros outside the image.
    """
    if connectivity not in LAPLACIAN_KERNELS:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    C = x.shape[1]
    k = torch.tensor(LAPLACIAN_KERNELS[connectivity], dtype=x.dtype, device=x.device)
    return F.conv2d(x, k.expand(C, 1, 3, 3), padding=1, groups=C)


def laplacian_normal_loss(
    rendered: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    connectivity: int = 4,
    normalize: bool = True,
    erosion: int = 1,
) -> torch.Tensor:
    """L1 between the image-space Laplacians of two normal maps, over the eroded mask (NHA).

    Comparing Laplacians (second derivatives) makes the term blind to smooth low-frequency bias of
    pseudo ground-truth normals while still transferring their fine detail. The mask is eroded by
    ``erosion`` pixels (at least 1, the Laplacian's reach; the image border counts as outside) so no
    Laplacian mixes in background or off-image pixels. Per pixel the error is the L1 norm of the
    3-vector difference (summed over x, y, z); the result is its mean over the eroded mask.

    Args:
        rendered: (B,3,H,W) rendered normals.
        target: (B,3,H,W) target (pseudo) normals.
        mask: (B,1,H,W) weights in [0,1]; None = the whole image (minus the border).
        connectivity: 4 or 8-neighbour 3x3 Laplacian kernel (see :func:`image_laplacian`).
        normalize: normalise both maps to unit length per pixel first.
        erosion: erosion radius in pixels, >= 1.

    Returns:
        () scalar ``sum(m_e * |lap(r) - lap(t)|_1) / sum(m_e)``; 0 when the eroded mask is empty.
    """
    if erosion < 1:
        raise ValueError(f"erosion must be >= 1 (the 3x3 Laplacian reaches one pixel), got {erosion}")
    target = target.to(rendered)
    if normalize:
        rendered, target = _unit(rendered), _unit(target)
    m = erode_mask(_mask_or_ones(mask, rendered), erosion)
    diff = image_laplacian(rendered, connectivity) - image_laplacian(target, connectivity)
    diff = diff.abs().sum(1, keepdim=True)
    return (m * diff).sum() / m.sum().clamp_min(1e-8)
