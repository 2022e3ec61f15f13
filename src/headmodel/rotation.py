"""Rotation conversions (batched, differentiable)."""

from __future__ import annotations

import torch


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula.

    Args:
        aa: (...,3) axis-angle vectors (angle = norm, radians).

    Returns:
        (...,3,3) rotation matrices. Smooth at zero (Taylor terms below 1e-4 rad).
    """
    theta2 = (aa * aa).sum(-1, keepdim=True)  # (...,1)
    theta = torch.sqrt(theta2.clamp_min(1e-12))
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    x, y, z = aa.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*aa.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(K)
    return eye + a[..., None] * K + b[..., None] * (K @ K)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`axis_angle_to_matrix` for angles in [0, pi).

    Args:
        R: (...,3,3) rotation matrices.

    Returns:
        (...,3) axis-angle vectors.
    """
    cos = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = torch.acos(cos)
    v = torch.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1
    )
    sin = torch.sin(theta)
    scale = torch.where(sin.abs() < 1e-6, 0.5 + theta**2 / 12, theta / (2 * sin))
    return v * scale[..., None]


def euler_to_axis_angle(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Head angles (radians) to axis-angle: R = Ry(yaw) @ Rx(pitch) @ Rz(roll).

    Args:
        yaw, pitch, roll: (...) tensors of equal shape.

    Returns:
        (...,3) axis-angle vectors.
    """
    zero = torch.zeros_like(yaw)
    Ry = axis_angle_to_matrix(torch.stack([zero, yaw, zero], -1))
    Rx = axis_angle_to_matrix(torch.stack([pitch, zero, zero], -1))
    Rz = axis_angle_to_matrix(torch.stack([zero, zero, roll], -1))
    return matrix_to_axis_angle(Ry @ Rx @ Rz)
