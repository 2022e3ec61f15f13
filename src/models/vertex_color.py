"""Baseline avatar: the tracked head model with one learned colour per vertex.

The smallest model that exercises the whole chain (data, head model, differentiable renderer, losses,
metrics, callbacks, checkpoints). The avatar families of the project replace it.
"""

from __future__ import annotations

from typing import Any

import hydra
import torch
import torch.nn.functional as F
from torch import nn

from src.core.outputs import Batch, Out
from src.losses import WeightedLoss, rgb_l1, silhouette_loss
from src.models.base_module import AvatarModule, Tensors


class VertexColorAvatar(AvatarModule):
    """Per-vertex colours + a low-resolution learned background over the subject's tracked parameters.

    Args:
        headmodel: head-model config (instantiated here).
        renderer: renderer config (``src.render.MeshRenderer``).
        hidden_regions: head-model regions that are not rendered; None: the head model's ``hidden_regions``.
        background_size: side of the learned background grid (upsampled bilinearly).
        sigma: soft-silhouette sharpness in pixels.
        loss: {"weights": {term: weight}} with terms rgb_l1, silhouette.
        metrics: ImageMetrics settings.
        optimizer: a partial optimizer (``_partial_: true``).
        scheduler: optional partial LR scheduler.
        refine_pose: learn per-frame rotation/translation corrections (driven by the silhouette term).
    """

    def __init__(
        self,
        headmodel: Any,
        renderer: Any,
        background_size: int,
        sigma: float,
        loss: Any,
        metrics: Any,
        optimizer: Any,
        hidden_regions: list[str] | None = None,
        scheduler: Any = None,
        refine_pose: bool = True,
    ) -> None:
        super().__init__(metrics)
        self.save_hyperparameters(logger=False)
        self.headmodel = hydra.utils.instantiate(headmodel)
        self.renderer = hydra.utils.instantiate(renderer)
        hidden = self.headmodel.hidden_regions if hidden_regions is None else list(hidden_regions)
        keep = ~self.headmodel.region_face_mask(hidden)
        self.register_buffer("faces", self.headmodel.faces[keep], persistent=False)
        n_verts = self.headmodel.template.shape[0]
        self.color_logits = nn.Parameter(torch.zeros(n_verts, 3))
        self.background = nn.Parameter(torch.zeros(1, 3, background_size, background_size))
        self.pose_delta = nn.Parameter(torch.zeros(0, 6)) if refine_pose else None
        self.loss_fn = WeightedLoss(loss["weights"])

    def on_frames_ready(self, state_dict=None) -> None:
        """Size the per-frame pose corrections to the number of frames."""
        if self.pose_delta is not None and self.pose_delta.shape[0] != self.frames.n_frames:
            device = self.color_logits.device
            self.pose_delta = nn.Parameter(torch.zeros(self.frames.n_frames, 6, device=device))

    # ---------------------------------------------------------------- rendering
    def forward(self, index: torch.Tensor, soft_alpha: bool = True) -> dict[str, torch.Tensor]:
        """Render frames ``index`` (B,).

        Returns:
            dict with Out.IMAGE (B,3,H,W), Out.COVERAGE (B,1,H,W) hard mask, Out.NORMALS (B,3,H,W) and,
            when ``soft_alpha``, Out.SOFT_ALPHA (B,1,H,W).
        """
        f = self.frames
        rot, trans = f.rotation[index], f.translation[index]
        if self.pose_delta is not None:
            rot = rot + 0.1 * self.pose_delta[index, :3]
            trans = trans + 0.01 * self.pose_delta[index, 3:]
        b = index.shape[0]
        verts = self.headmodel(f.identity[None].expand(b, -1), f.expression[index], rot, trans)
        return self._render(verts, f.cameras_for(index, self.image_size), soft_alpha)

    def _render(self, verts: torch.Tensor, cameras, soft_alpha: bool) -> dict[str, torch.Tensor]:
        """Posed vertices (B,V,3) -> image over the learned background, coverage, normals (soft alpha)."""
        out = self.renderer(
            verts, self.faces, cameras, vertex_colors=torch.sigmoid(self.color_logits), soft_alpha=soft_alpha,
            sigma=self.hparams.sigma,
        )  # fmt: skip
        size = tuple(cameras.image_size)
        bg = F.interpolate(torch.sigmoid(self.background), size=size, mode="bilinear", align_corners=False)
        mask = out["mask"].float()
        image = mask * out["rgb"] + (1 - mask) * bg
        result = {Out.IMAGE: image, Out.COVERAGE: mask, Out.NORMALS: out["normals"]}
        if soft_alpha:
            result[Out.SOFT_ALPHA] = out["alpha"]
        return result

    def render_params(self, identity, expression, rotation, translation, cameras, joint_pose=None):
        """See :meth:`src.models.avatar.AvatarMixin.render_params`."""
        b = expression.shape[0]
        verts = self.headmodel(identity[None].expand(b, -1), expression, rotation, translation, joint_pose)
        out = self._render(verts, cameras, soft_alpha=False)
        return {Out.IMAGE: out[Out.IMAGE].clamp(0, 1), Out.COVERAGE: out[Out.COVERAGE]}

    def personalized_vertices(self, expression, joint_pose=None):
        """See :meth:`src.models.avatar.AvatarMixin.personalized_vertices`."""
        b = expression.shape[0]
        return self.headmodel.canonical(self.frames.identity[None].expand(b, -1), expression, joint_pose)

    def texture_colors(self, points, face_idx, bary, expression):
        """Vertex colours blended with the barycentric weights."""
        tri = self.headmodel.faces[face_idx]  # (P,3)
        return (torch.sigmoid(self.color_logits)[tri] * bary[..., None]).sum(1)

    # ---------------------------------------------------------------- losses
    def loss_dict(self, batch: Tensors, out: Tensors) -> tuple[torch.Tensor, Tensors]:
        """rgb_l1 and silhouette (on the soft silhouette when rendered, else the hard coverage)."""
        alpha = out[Out.SOFT_ALPHA] if Out.SOFT_ALPHA in out else out[Out.COVERAGE]
        terms = {
            "rgb_l1": lambda: rgb_l1(out[Out.IMAGE], batch[Batch.IMAGE]),
            "silhouette": lambda: silhouette_loss(alpha, batch[Batch.MASK]),
        }
        return self.loss_fn(terms)

    def eval_losses(self, batch: Tensors, out: Tensors) -> Tensors:
        """The training loss on the evaluated frames, logged as ``val/loss`` / ``test/loss``."""
        return {"loss": self.loss_dict(batch, out)[0]}

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = hydra.utils.instantiate(self.hparams.optimizer)(params=params)
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        scheduler = hydra.utils.instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler}}
