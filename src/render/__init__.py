"""Differentiable mesh rendering in plain PyTorch (no compiled extensions; CPU and CUDA).

Conventions: OpenCV cameras (x right, y down, z forward, ``X_cam = R X_world + t``), pixel coordinates with
the origin at the top-left image corner (pixel centres at half-integers), metres. Images are channels-first
(B,C,H,W) in :class:`MeshRenderer` outputs; the low-level functions use (B,H,W,...) layouts.
"""

from src.render.camera import Cameras, intrinsics, intrinsics_from_fov, look_at, scale_intrinsics
from src.render.interpolate import interpolate
from src.render.rasterize import Fragments, rasterize
from src.render.renderer import MeshRenderer, sample_texture
from src.render.shading import face_normals, lambert, sh_ambient, sh_basis, sh_shading, vertex_normals
from src.render.silhouette import soft_silhouette
from src.render.supersample import box_filter, center_samples, supersample_cameras

__all__ = [
    "Cameras",
    "Fragments",
    "MeshRenderer",
    "box_filter",
    "center_samples",
    "face_normals",
    "interpolate",
    "intrinsics",
    "intrinsics_from_fov",
    "lambert",
    "look_at",
    "rasterize",
    "sample_texture",
    "scale_intrinsics",
    "sh_ambient",
    "sh_basis",
    "sh_shading",
    "soft_silhouette",
    "supersample_cameras",
    "vertex_normals",
]
