"""Cameras for reenactment: the subject's camera at another resolution, and orbits for novel views."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from src.headmodel.rotation import axis_angle_to_matrix
from src.reenact.sequences import ReenactError
from src.render import Cameras, look_at, scale_intrinsics


def parse_image_size(value, default: tuple[int, int]) -> tuple[int, int]:
    """(H, W) from None (``default``), an int (square) or a pair."""
    if value is None:
        return (int(default[0]), int(default[1]))
    if isinstance(value, int):
        value = (value, value)
    h, w = (int(v) for v in value)
    if h < 2 or w < 2:
        raise ReenactError(f"image_size={value} is too small; give a side of at least 2 pixels, e.g. 256")
    return (h, w)


def subject_cameras(
    params, n: int, train_size: tuple[int, int], image_size: tuple[int, int] | None = None
) -> Cameras:
    """The subject's tracked camera repeated for ``n`` frames, optionally at another resolution.

    Args:
        params: a mapping or ``model.frames`` with K (3,3) (for ``train_size``), R (3,3), t (3,).
        n: batch size.
        train_size: (H, W) the intrinsics belong to.
        image_size: (H', W') to render at, or None for ``train_size``.

    Returns:
        Cameras of batch n.
    """
    size = tuple(image_size or train_size)
    K, R, t = (params[k] if isinstance(params, Mapping) else getattr(params, k) for k in ("K", "R", "t"))
    K = scale_intrinsics(K.float(), tuple(train_size), size)
    return Cameras(K.expand(n, 3, 3), R.float().expand(n, 3, 3), t.float().expand(n, 3), size)


def orbit_cameras(
    base: Cameras, n_frames: int, yaw_range_deg: float, pitch_deg: float, center: torch.Tensor
) -> Cameras:
    """Novel views: the camera swings around the head centre (the head stays where it is).

    The base camera's offset from ``center`` is rotated about the world x axis by ``pitch_deg`` (positive:
    the camera rises and looks down on the head), then about the world y axis (+y up) by
    ``yaw_i = yaw_range_deg * sin(2 pi i / N)``, a seamless loop from the front to one side, across to the
    other and back. Every camera keeps the base intrinsics and distance and looks at ``center`` with world
    +y up, so the centres lie on one horizontal circle around the vertical axis through ``center``.
    (Rotating the camera by yaw about the head is the same image as rotating the head by -yaw under a
    fixed camera, lighting aside, as the avatars' colours do not depend on the view.)

    Args:
        base: one camera (batch 1); its centre sets the orbit radius and starting direction.
        n_frames: N.
        yaw_range_deg: amplitude of the swing in degrees.
        pitch_deg: elevation in degrees.
        center: (3,) the head centre in world coordinates.

    Returns:
        Cameras of batch N.
    """
    if len(base) != 1:
        raise ReenactError(f"orbit_cameras needs one base camera, got {len(base)}; pass cameras[0]")
    center = torch.as_tensor(center, dtype=base.R.dtype, device=base.device).reshape(3)
    offset = base.centers()[0] - center  # (3,)
    i = torch.arange(n_frames, dtype=base.R.dtype, device=base.device)
    yaw = math.radians(yaw_range_deg) * torch.sin(2 * math.pi * i / n_frames)
    zero = torch.zeros_like(yaw)
    Ry = axis_angle_to_matrix(torch.stack([zero, yaw, zero], -1))  # (N,3,3)
    Rx = axis_angle_to_matrix(torch.tensor([-math.radians(pitch_deg), 0.0, 0.0], dtype=base.R.dtype))
    eye = center + (Ry @ (Rx.to(base.device) @ offset))  # (N,3)
    R, t = look_at(
        eye, center.expand_as(eye), torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device)
    )
    return Cameras(base.K.expand(n_frames, 3, 3), R, t, base.image_size)
