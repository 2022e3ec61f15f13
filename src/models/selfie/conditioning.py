"""Conditioning images of the image avatar: the head-model render I_R and the UV image I_UV."""

from __future__ import annotations

import torch
from torch import nn

from src.core.outputs import Out
from src.render import Cameras, MeshRenderer

# Lambert light of the conditioning render: from the camera, slightly above (camera space, +y down)
LIGHT_DIR = (0.0, -0.3, -1.0)


class HeadConditioner(nn.Module):
    """Renders the head model for given parameters into the generator's conditioning channels.

    The render is a grey, Lambert-shaded image of the (unrefined) head model (I_R), plus the interpolated
    atlas UV coordinates (I_UV) and the coverage mask. Nothing here is learned; the images depend only on
    the tracked parameters and the camera, so they are computed without gradients.

    Args:
        headmodel: a HeadModel instance.
        renderer: a MeshRenderer.
        hidden_regions: head-model regions left out of the render; None: the head model's ``hidden_regions``
            (ICT: transparent overlays, eyelash shells).
    """

    channels = 6  # render (3) + uv (2) + mask (1)

    def __init__(
        self, headmodel: nn.Module, renderer: MeshRenderer, hidden_regions: list[str] | None = None
    ) -> None:
        super().__init__()
        self.headmodel = headmodel
        self.renderer = renderer
        hidden = headmodel.hidden_regions if hidden_regions is None else list(hidden_regions)
        keep = ~headmodel.region_face_mask(hidden) if hidden else None
        faces, face_uvs = headmodel.faces, headmodel.face_uvs
        if keep is not None:
            faces, face_uvs = faces[keep], face_uvs[keep]
        self.register_buffer("faces", faces, persistent=False)
        self.register_buffer("face_uvs", face_uvs, persistent=False)
        self.register_buffer("light_dir", torch.tensor(LIGHT_DIR), persistent=False)

    @torch.no_grad()
    def forward(
        self,
        identity: torch.Tensor,
        expression: torch.Tensor,
        rotation: torch.Tensor,
        translation: torch.Tensor,
        cameras: Cameras,
        joint_pose: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Conditioning images of a batch.

        Args:
            identity: (Ni,) or (B,Ni); expression: (B,Ne); rotation, translation: (B,3);
            cameras: B cameras; joint_pose: (B,Nj) (Nj may be 0) or None.

        Returns:
            dict with CONDITION (B,3,H,W) the render in [0,1] (0 off the head), CONDITION_UV (B,2,H,W) in
            [0,1] (0 off the head), CONDITION_MASK (B,1,H,W) float coverage and CONDITION_STACK (B,6,H,W)
            the three concatenated (keys of :class:`Out`).
        """
        hm = self.headmodel
        b = expression.shape[0]
        ident = identity.expand(b, -1) if identity.ndim == 1 else identity
        jp = joint_pose if joint_pose is not None and joint_pose.shape[-1] else None
        verts = hm(ident, expression, rotation, translation, jp)
        light = torch.nn.functional.normalize(self.light_dir, dim=0).to(verts)
        out = self.renderer(
            verts, self.faces, cameras, uv=(hm.uvs, self.face_uvs), light_dir=light, ambient=0.25,
            diffuse=0.75, soft_alpha=False, background=0.0,
        )  # fmt: skip
        mask = out["alpha"]
        uv = out["uv"] * mask
        render = out["rgb"].clamp(0, 1) * mask
        return split_conditioning(torch.cat([render, uv, mask], dim=1))


def split_conditioning(stack: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B,6,H,W) concatenated conditioning -> the dict of :meth:`HeadConditioner.forward`."""
    return {
        Out.CONDITION: stack[:, :3],
        Out.CONDITION_UV: stack[:, 3:5],
        Out.CONDITION_MASK: stack[:, 5:6],
        Out.CONDITION_STACK: stack,
    }
