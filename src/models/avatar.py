"""The interface every avatar LightningModule offers to evaluate.py, reenact.py and mesh export.

An avatar holds a head model (``self.headmodel``), the subject's tracked per-frame parameters and camera
(``self.frames``, :class:`src.models.frame_params.FrameParams`) and the training image size. Besides
``predict_frames`` (render tracked frames) it renders arbitrary parameters, which is all reenactment
needs, and gives its personalised mesh and a texture in the head model's UV atlas, which is all export
needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from src.render import Cameras, interpolate
from src.render.uv import grow_texture, rasterize_uv


class AvatarMixin(ABC):
    """What every avatar family offers: it must write :meth:`render_params` and
    :meth:`personalized_vertices` (and ``forward``, see :class:`src.models.base_module.AvatarModule`);
    :meth:`texture_colors` (mesh export) and :meth:`posed_vertices` (geometry scores) are optional, and
    raise ``NotImplementedError`` in a family that has no mesh texture or posed mesh."""

    @abstractmethod
    def render_params(
        self,
        identity: torch.Tensor,
        expression: torch.Tensor,
        rotation: torch.Tensor,
        translation: torch.Tensor,
        cameras: Cameras,
        joint_pose: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Render the avatar for arbitrary head-model parameters.

        Args:
            identity: (n_identity,) subject identity (usually ``self.frames.identity``).
            expression: (B,n_expression).
            rotation: (B,3) axis-angle head rotation; translation: (B,3) metres.
            cameras: a batch of B cameras (any image size).
            joint_pose: (B,n_joint_pose) or None.

        Returns:
            dict with Out.IMAGE (B,3,H,W) in [0,1] (over the avatar's background) and the avatar's
            foreground: Out.COVERAGE (B,1,H,W) for mesh avatars, Out.MATTE (B,1,H,W) for image avatars.
        """

    @abstractmethod
    def personalized_vertices(
        self, expression: torch.Tensor, joint_pose: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B,V,3) canonical (unposed) vertices of the personalised mesh at the given expressions."""

    def texture_colors(
        self, points: torch.Tensor, face_idx: torch.Tensor, bary: torch.Tensor, expression: torch.Tensor
    ) -> torch.Tensor:
        """Albedo-like colours of surface points for texture baking.

        Args:
            points: (P,3) canonical surface positions.
            face_idx: (P,) long triangle of each point.
            bary: (P,3) barycentric coordinates of each point in its triangle.
            expression: (n_expression,) expression the texture is baked at.

        Returns:
            (P,3) colours in [0,1].
        """
        raise NotImplementedError

    def posed_vertices(self, index: torch.Tensor) -> torch.Tensor:
        """(B,V,3) posed world-space vertices of tracked frames ``index`` (for geometry scores)."""
        raise NotImplementedError

    def prepare_split(self, split: str, batches) -> None:  # noqa: B027  (optional hook, default nothing)
        """Hook run before frames of ``split`` are rendered for scoring (default: nothing).

        Avatars whose per-frame parameters are only trained on training frames may fit the held-out
        frames' parameters here (with the avatar itself frozen); evaluate.py and the test loop call it.

        Args:
            split: "val" or "test" (or "train").
            batches: the split's batches (an iterable of batch dicts, e.g. its DataLoader).
        """

    @torch.no_grad()
    def bake_texture(self, size: int = 512, expression: torch.Tensor | None = None) -> torch.Tensor:
        """Bake the avatar's colours into the head model's UV atlas.

        Args:
            size: texture side in pixels.
            expression: (n_expression,) expression to bake at (default neutral).

        Returns:
            (3,size,size) texture in [0,1], row 0 at v = 1 (OBJ convention), empty texels grown from
            their neighbours so that bilinear lookups at seams do not bleed.
        """
        hm = self.headmodel
        if expression is None:
            expression = torch.zeros(hm.n_expression, device=hm.uvs.device)
        verts = self.personalized_vertices(expression[None])  # (1,V,3)
        frags = rasterize_uv(hm.uvs, hm.face_uvs, size)
        pos = interpolate(verts, hm.faces, frags)[0]  # (H,W,3)
        valid = frags.face_idx[0] >= 0
        tex = torch.zeros(3, size, size, device=pos.device)
        if valid.any():
            cols = self.texture_colors(pos[valid], frags.face_idx[0][valid], frags.bary[0][valid], expression)
            tex[:, valid] = cols.T.to(tex)
        return grow_texture(tex, valid)
