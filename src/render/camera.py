"""Pinhole cameras in the OpenCV convention.

World -> camera: ``X_cam = R @ X_world + t``. Camera axes: x right, y down, z forward (points in front of the
camera have positive depth). Intrinsics ``K`` are in pixels and pixel coordinates have their origin at the
top-left *corner* of the image, so the centre of pixel (row i, column j) is at
``(x, y) = (j + 0.5, i + 0.5)``.
Units are metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Cameras", "intrinsics", "intrinsics_from_fov", "look_at"]

# Depth below which a point is treated as "at the camera" when dividing by z (avoids inf/NaN gradients).
_MIN_DIV_DEPTH = 1e-8


def scale_intrinsics(K: torch.Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> torch.Tensor:
    """Intrinsics for rendering the same view at another resolution.

    With pixel coordinates measured from the image corner, resizing by ``sx = W'/W``, ``sy = H'/H`` maps
    ``(fx, cx) -> (sx fx, sx cx)`` and ``(fy, cy) -> (sy fy, sy cy)`` exactly.

    Args:
        K: (...,3,3) intrinsics for images of ``from_size`` (H, W).
        to_size: (H', W').

    Returns:
        (...,3,3) intrinsics.
    """
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    S = torch.diag(torch.tensor([sx, sy, 1.0], dtype=K.dtype, device=K.device))
    return S @ K


@dataclass
class Cameras:
    """A batch of pinhole cameras.

    Attributes:
        K: (B,3,3) intrinsics in pixels.
        R: (B,3,3) world->camera rotation.
        t: (B,3) world->camera translation.
        image_size: (H, W) in pixels, shared by the batch.

    A batch dimension of 1 in any of ``K``, ``R``, ``t`` is broadcast to the largest batch size on
    construction; unbatched (3,3)/(3,) inputs are accepted and get a batch dimension of 1.
    """

    K: Tensor
    R: Tensor
    t: Tensor
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        K, R, t = self.K, self.R, self.t
        if K.dim() == 2:
            K = K[None]
        if R.dim() == 2:
            R = R[None]
        if t.dim() == 1:
            t = t[None]
        if K.shape[-2:] != (3, 3) or R.shape[-2:] != (3, 3) or t.shape[-1] != 3:
            raise ValueError(
                f"Cameras expects K (B,3,3), R (B,3,3), t (B,3); got {K.shape}, {R.shape}, {t.shape}"
            )
        B = max(K.shape[0], R.shape[0], t.shape[0])
        for name, x in (("K", K), ("R", R), ("t", t)):
            if x.shape[0] not in (1, B):
                raise ValueError(f"Cameras: batch size of {name} is {x.shape[0]}, expected 1 or {B}")
        self.K = K.expand(B, 3, 3)
        self.R = R.expand(B, 3, 3)
        self.t = t.expand(B, 3)
        H, W = self.image_size
        self.image_size = (int(H), int(W))

    def __len__(self) -> int:
        return self.K.shape[0]

    @property
    def device(self) -> torch.device:
        return self.K.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Cameras:
        """A copy on ``device`` (and optionally cast to the floating ``dtype``)."""
        return Cameras(
            self.K.to(device=device, dtype=dtype),
            self.R.to(device=device, dtype=dtype),
            self.t.to(device=device, dtype=dtype),
            self.image_size,
        )

    def resized(self, image_size: tuple[int, int]) -> Cameras:
        """The same views rendered at another resolution (H', W') (intrinsics scaled)."""
        size = (int(image_size[0]), int(image_size[1]))
        return Cameras(scale_intrinsics(self.K, self.image_size, size), self.R, self.t, size)

    def __getitem__(self, idx: int | slice | Tensor) -> Cameras:
        """Select cameras of the batch (an int keeps a batch dimension of 1)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1 if idx != -1 else None)
        return Cameras(self.K[idx], self.R[idx], self.t[idx], self.image_size)

    def transform(self, points: Tensor) -> Tensor:
        """World -> camera coordinates.

        Args:
            points: (B,N,3) world points (B may be 1 or the camera batch size).

        Returns:
            (B,N,3) camera-space points ``R @ X + t``.
        """
        return points @ self.R.transpose(1, 2).to(points.dtype) + self.t.to(points.dtype)[:, None, :]

    def screen(self, points: Tensor) -> Tensor:
        """World -> screen space, the input of :func:`src.render.rasterize`.

        Args:
            points: (B,N,3) world points.

        Returns:
            (B,N,3) ``(x_pix, y_pix, z_cam)``. For points with ``z_cam <= 0`` the pixel coordinates are finite
            but meaningless (the division uses a clamped depth); the rasterizer skips such faces.
        """
        X = self.transform(points)
        z = X[..., 2:3]
        xy = X[..., :2] / z.clamp(min=_MIN_DIV_DEPTH)
        K = self.K.to(points.dtype)
        pix = xy @ K[:, :2, :2].transpose(1, 2) + K[:, None, :2, 2]
        return torch.cat([pix, z], dim=-1)

    def project(self, points: Tensor) -> Tensor:
        """World -> pixel coordinates.

        Args:
            points: (B,N,3) world points.

        Returns:
            (B,N,2) pixel coordinates (x right, y down, origin at the top-left image corner).
        """
        return self.screen(points)[..., :2]

    def centers(self) -> Tensor:
        """(B,3) camera centres in world coordinates, ``-R^T t``."""
        return -(self.R.transpose(1, 2) @ self.t[..., None])[..., 0]


def look_at(eye: Tensor, target: Tensor, up: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """World->camera extrinsics of cameras at ``eye`` looking at ``target`` (OpenCV axes).

    The camera z axis points from ``eye`` to ``target``; the image "up" direction (decreasing pixel y) is the
    projection of the world ``up`` vector. E.g. ``eye=(0,0,0.6)``, ``target=0``, ``up=(0,1,0)`` views a face
    looking along +z upright, with world +x on the image right.

    Args:
        eye: (B,3) camera centres (or (3,)).
        target: (B,3) or (3,) points looked at.
        up: (B,3) or (3,) world up vectors; default (0,1,0).

    Returns:
        R: (B,3,3) rotation, rows are the camera x, y, z axes in world coordinates.
        t: (B,3) translation ``-R @ eye``.
    """
    eye = eye if eye.dim() == 2 else eye[None]
    target = torch.as_tensor(target, dtype=eye.dtype, device=eye.device)
    target = target if target.dim() == 2 else target[None]
    if up is None:
        up = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device)
    up = torch.as_tensor(up, dtype=eye.dtype, device=eye.device)
    up = up if up.dim() == 2 else up[None]
    eye, target, up = torch.broadcast_tensors(eye, target, up)
    z = torch.nn.functional.normalize(target - eye, dim=-1)
    x = torch.nn.functional.normalize(torch.linalg.cross(z, up, dim=-1), dim=-1)
    y = torch.linalg.cross(z, x, dim=-1)
    R = torch.stack([x, y, z], dim=1)
    t = -(R @ eye[..., None])[..., 0]
    return R, t


def intrinsics(
    fx: float | Tensor,
    fy: float | Tensor,
    cx: float | Tensor,
    cy: float | Tensor,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Build intrinsic matrices.

    Args:
        fx, fy: focal lengths in pixels, floats or (B,) tensors.
        cx, cy: principal point in pixels (top-left-corner origin), floats or (B,) tensors.

    Returns:
        (B,3,3) ``[[fx,0,cx],[0,fy,cy],[0,0,1]]`` (B = 1 for scalar inputs).
    """
    vals = [torch.as_tensor(v, dtype=dtype, device=device) for v in (fx, fy, cx, cy)]
    if dtype is None:
        dtype = torch.promote_types(torch.get_default_dtype(), vals[0].dtype)
        vals = [v.to(dtype) for v in vals]
    fx, fy, cx, cy = torch.broadcast_tensors(*[v.reshape(-1) for v in vals])
    K = torch.zeros(fx.shape[0], 3, 3, dtype=fx.dtype, device=fx.device)
    K[:, 0, 0] = fx
    K[:, 1, 1] = fy
    K[:, 0, 2] = cx
    K[:, 1, 2] = cy
    K[:, 2, 2] = 1.0
    return K


def intrinsics_from_fov(
    fov_deg: float | Tensor,
    H: int,
    W: int,
    axis: str = "y",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Intrinsics of an ideal camera (square pixels, principal point at the image centre).

    Args:
        fov_deg: field of view in degrees, float or (B,) tensor, along ``axis``.
        H, W: image size in pixels.
        axis: "y" (vertical field of view, default) or "x" (horizontal).

    Returns:
        (B,3,3) intrinsics with ``cx = W/2``, ``cy = H/2``.
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    fov = torch.as_tensor(fov_deg, dtype=dtype or torch.get_default_dtype(), device=device)
    extent = H if axis == "y" else W
    f = 0.5 * extent / torch.tan(0.5 * fov * (math.pi / 180.0))
    return intrinsics(f, f, W / 2.0, H / 2.0, dtype=f.dtype, device=f.device)
