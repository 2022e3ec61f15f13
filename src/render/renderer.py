"""``MeshRenderer``: cameras + rasteriser + interpolation + texture/vertex colours + shading + soft alpha."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.render.camera import Cameras
from src.render.interpolate import interpolate
from src.render.rasterize import DEFAULT_MAX_PAIRS, rasterize
from src.render.shading import lambert, sh_shading, vertex_normals
from src.render.silhouette import soft_silhouette

__all__ = ["MeshRenderer", "sample_texture"]

BACKENDS = ("torch",)


def sample_texture(texture: Tensor, uv: Tensor, padding_mode: str = "border") -> Tensor:
    """Bilinearly sample a texture at OBJ-convention uv coordinates.

    Args:
        texture: (B,C,Ht,Wt) or (1,C,Ht,Wt) image; row 0 is the top of the texture.
        uv: (B,H,W,2) coordinates; (0,0) is the bottom-left corner of the texture image, (1,1) the top-right
            (texture column = u * Wt, row = (1 - v) * Ht, in corner-origin pixel units).
        padding_mode: ``grid_sample`` padding mode.

    Returns:
        (B,C,H,W) sampled values.
    """
    B = uv.shape[0]
    if texture.shape[0] == 1 and B > 1:
        texture = texture.expand(B, -1, -1, -1)
    grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], dim=-1).to(texture.dtype)
    return F.grid_sample(texture, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


class MeshRenderer(nn.Module):
    """Differentiable mesh renderer (plain PyTorch, CPU and CUDA).

    Args:
        sigma: default soft-silhouette sharpness in pixels.
        perspective_correct: perspective-correct barycentrics (recommended for 3D rendering).
        cull_backfaces: skip back faces (default: render both windings).
        near: faces with a vertex closer than this (metres) are skipped.
        background: scalar or (C,) colour of background pixels in "rgb".
        light_space: "camera" (default) or "world": the space of the normals used with ``sh`` / ``light_dir``.
        backend: only "torch" is available (pytorch3d is not a dependency of this project).
        max_pairs: memory knob of the rasteriser, see :func:`src.render.rasterize`.
        soft_visible_only: build the soft silhouette from the triangles visible in the hard rasterisation
            only (the silhouette's edges are visible triangles; much cheaper for dense meshes).
    """

    def __init__(
        self,
        sigma: float = 0.5,
        perspective_correct: bool = True,
        cull_backfaces: bool = False,
        near: float = 1e-3,
        background: float | Tensor = 0.0,
        light_space: str = "camera",
        backend: str = "torch",
        max_pairs: int = DEFAULT_MAX_PAIRS,
        soft_visible_only: bool = True,
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(
                f"unknown renderer backend {backend!r}; available: {BACKENDS} (a pytorch3d backend is not "
                "provided because pytorch3d cannot be installed in this project's environments)"
            )
        if light_space not in ("camera", "world"):
            raise ValueError(f"light_space must be 'camera' or 'world', got {light_space!r}")
        self.sigma = sigma
        self.perspective_correct = perspective_correct
        self.cull_backfaces = cull_backfaces
        self.near = near
        self.background = background
        self.light_space = light_space
        self.backend = backend
        self.max_pairs = max_pairs
        self.soft_visible_only = soft_visible_only

    @staticmethod
    def _visible_faces(face_idx: Tensor, n_faces: int) -> Tensor:
        """(B,H,W) rasterised face ids -> (B,F) bool of faces that cover at least one pixel."""
        B = face_idx.shape[0]
        vis = torch.zeros(B, n_faces + 1, dtype=torch.bool, device=face_idx.device)
        vis.scatter_(1, (face_idx.view(B, -1) + 1), True)
        return vis[:, 1:]

    def forward(
        self,
        vertices: Tensor,
        faces: Tensor,
        cameras: Cameras,
        vertex_colors: Tensor | None = None,
        uv: tuple[Tensor, Tensor] | None = None,
        texture: Tensor | None = None,
        sh: Tensor | None = None,
        light_dir: Tensor | None = None,
        ambient: float | Tensor = 0.3,
        diffuse: float | Tensor = 0.7,
        soft_alpha: bool = True,
        sigma: float | None = None,
        background: float | Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Render a batch of meshes.

        Args:
            vertices: (B,V,3) world-space vertices in metres (B may be 1 with a batch of cameras).
            faces: (F,3) long triangle indices, shared by the batch.
            cameras: :class:`Cameras` with batch size B (or 1).
            vertex_colors: (B,V,C) or (V,C) per-vertex colours (used when no texture is given).
            uv: ``(uvs (T,2), face_uvs (F,3))`` texture coordinates, OBJ convention (v up).
            texture: (B,C,Ht,Wt) or (1,C,Ht,Wt) texture image; needs ``uv``.
            sh: (B,9,3) or (9,3) SH lighting (see :mod:`src.render.shading`); takes precedence over
                ``light_dir``.
            light_dir: (B,3) or (3,) direction towards a directional light, for Lambert shading with
                ``ambient`` and ``diffuse``.
            ambient, diffuse: Lambert parameters (scalars, (B,) or (B,3)).
            soft_alpha: return the soft silhouette as "alpha" (else the hard mask as float).
            sigma: soft-silhouette sharpness in pixels (default: the module's).
            background: background colour of "rgb" (default: the module's).

        Returns:
            dict with "rgb" (B,C,H,W) shaded colour (background colour outside the mask; unlit albedo if no
            lighting is given; white if neither texture nor vertex colours), "alpha" (B,1,H,W), "mask"
            (B,1,H,W) bool, "depth" (B,1,H,W) camera depth (0 on background), "normals" (B,3,H,W) camera-space
            unit normals (0 on background), "face_idx" (B,H,W) long (-1 on background), "bary" (B,H,W,3),
            and "uv" (B,2,H,W) when ``uv`` is given. "rgb" is hard-masked: gradients w.r.t. vertex positions
            from pixels inside the mask flow through the barycentrics (colour/uv/normal interpolation), and
            silhouette gradients come from the soft "alpha"; to composite over an image use
            ``rgb * alpha + image * (1 - alpha)``.
        """
        if texture is not None and uv is None:
            raise ValueError("a texture needs uv=(uvs, face_uvs)")
        B = max(vertices.shape[0], len(cameras))
        if vertices.shape[0] != B:
            vertices = vertices.expand(B, -1, -1)
        faces = faces.to(device=vertices.device, dtype=torch.long)
        H, W = cameras.image_size
        vs = cameras.screen(vertices)
        frags = rasterize(
            vs, faces, (H, W), self.perspective_correct, self.near, self.cull_backfaces, self.max_pairs
        )
        mask = frags.mask[..., None]  # (B,H,W,1)

        # Normals: area-weighted vertex normals, rotated to camera space, interpolated and renormalised.
        R = cameras.R.to(vertices.dtype).expand(B, 3, 3)
        vn = vertex_normals(vertices, faces)
        vn_cam = vn @ R.transpose(1, 2)
        n_cam = F.normalize(interpolate(vn_cam, faces, frags), dim=-1, eps=1e-12)  # (B,H,W,3)

        out: dict[str, Tensor] = {}
        albedo = None
        if uv is not None:
            uvs, face_uvs = uv
            uv_img = interpolate(uvs.to(vertices), face_uvs, frags)  # (B,H,W,2)
            out["uv"] = uv_img.permute(0, 3, 1, 2)
            if texture is not None:
                albedo = sample_texture(texture.to(vertices), uv_img).permute(0, 2, 3, 1)
        if albedo is None and vertex_colors is not None:
            albedo = interpolate(vertex_colors.to(vertices), faces, frags)
        if albedo is None:
            albedo = vertices.new_ones(B, H, W, 3)

        if sh is not None or light_dir is not None:
            if self.light_space == "camera":
                n_light = n_cam
            else:
                n_light = F.normalize(interpolate(vn, faces, frags), dim=-1, eps=1e-12)
            if sh is not None:
                shade = sh_shading(n_light, sh.to(vertices))
            else:
                shade = lambert(n_light, light_dir.to(vertices), ambient, diffuse)
            albedo = albedo * shade
        bg = self.background if background is None else background
        bg = torch.as_tensor(bg, dtype=albedo.dtype, device=albedo.device)
        rgb = torch.where(mask, albedo, bg)

        if soft_alpha:
            s = self.sigma if sigma is None else sigma
            alpha = soft_silhouette(
                vs,
                faces,
                (H, W),
                sigma=s,
                mask=frags.mask,
                near=self.near,
                cull_backfaces=self.cull_backfaces,
                face_mask=self._visible_faces(frags.face_idx, faces.shape[0])
                if self.soft_visible_only
                else None,
            )
        else:
            alpha = frags.mask.to(vertices.dtype)

        out.update(
            rgb=rgb.permute(0, 3, 1, 2),
            alpha=alpha[:, None],
            mask=frags.mask[:, None],
            depth=frags.depth[:, None],
            normals=n_cam.permute(0, 3, 1, 2),
            face_idx=frags.face_idx,
            bary=frags.bary,
        )
        return out
