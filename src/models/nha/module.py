"""Neural Head Avatars as one LightningModule with named training stages."""

from __future__ import annotations

import logging
import math
from typing import Any

import hydra
import numpy as np
import torch
from torch import nn

from src.headmodel.rotation import axis_angle_to_matrix
from src.losses import (
    PerceptualLoss,
    WeightedLoss,
    edge_length_loss,
    expression_prior,
    identity_prior,
    landmark_loss,
    laplacian_normal_loss,
    laplacian_smoothness,
    masked_l1,
    mesh_edges,
    normal_consistency,
    offset_magnitude,
    semantic_loss,
    silhouette_loss,
    uniform_laplacian,
)
from src.metrics.geometry import geometry_errors, scored_vertices
from src.metrics.suite import ImageMetrics
from src.models.base_module import AvatarModule
from src.models.nha.avatar_net import NHARenderer
from src.models.nha.stages import parse_stages, stage_at, total_epochs
from src.render import Cameras
from src.utils.signals import check_stop

log = logging.getLogger(__name__)

TERMS = {
    "rgb_l1", "perceptual", "silhouette", "landmarks", "normals", "normal_laplacian", "semantic",
    "expression_prior", "identity_prior", "laplacian", "edge_length", "offset_magnitude",
}  # fmt: skip
GROUPS = {"identity", "expression", "pose", "geometry", "texture", "background"}


class NHAAvatar(AvatarModule):
    """Head model + geometry refinement MLP + FiLM-SIREN texture, trained in named stages.

    Args:
        headmodel: head-model config; renderer: MeshRenderer config.
        net: kwargs of :class:`NHARenderer` (regions, sub-network sizes).
        stages: name -> {epochs, lr: {group: lr}, loss: {term: weight}} in order; groups are identity,
            expression, pose, geometry, texture, background.
        loss: {"weights": {term: weight}, "class_weights": [...] (per SEG_LABELS), "landmark_weights":
            {"jaw": w}, "perceptual": {...} (PerceptualLoss kwargs)}.
        metrics: ImageMetrics settings.
        init_noise: std of noise added to the initial parameters: identity, expression, rotation_deg,
            translation_m (0 = start from the given tracking / ground truth).
        heldout_fit: fitting of held-out frames' expression and pose before they are scored, with the
            avatar frozen: {steps, lr, weights: {term: weight}} (steps 0 = use the given parameters).
        supersample: render at this factor (anti-aliased edges).
        sigma: soft-silhouette sharpness in output pixels.
        optimizer: partial optimizer; its lr is replaced per group by the stage's lr.
    """

    def __init__(
        self,
        headmodel: Any,
        renderer: Any,
        net: dict[str, Any],
        stages: dict[str, Any],
        loss: dict[str, Any],
        metrics: dict[str, Any],
        optimizer: Any,
        init_noise: dict[str, float] | None = None,
        heldout_fit: dict[str, Any] | None = None,
        supersample: int = 2,
        sigma: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__(metrics)
        self.save_hyperparameters(logger=False)
        hm = hydra.utils.instantiate(headmodel)
        self.net = NHARenderer(hm, hydra.utils.instantiate(renderer), **net)
        self.stages = parse_stages(stages, GROUPS, TERMS)
        self.base_weights = dict(loss["weights"])
        unknown = set(self.base_weights) - TERMS
        if unknown:
            raise ValueError(f"loss.weights has unknown terms {sorted(unknown)}; known: {sorted(TERMS)}")
        uses_perceptual = self.base_weights.get("perceptual", 0) > 0 or any(
            s.loss.get("perceptual", 0) > 0 for s in self.stages
        )
        self.perceptual = PerceptualLoss(**loss.get("perceptual", {})) if uses_perceptual else None
        cw = loss.get("class_weights")
        self.register_buffer(
            "class_weights", torch.tensor(cw, dtype=torch.float32) if cw else None, persistent=False
        )
        lw = torch.ones(68)
        lw[:17] = float(loss.get("landmark_weights", {}).get("jaw", 1.0))
        self.register_buffer("landmark_weights", lw, persistent=False)
        faces = self.net.faces
        V = hm.template.shape[0]
        self.register_buffer("edges", mesh_edges(faces), persistent=False)
        self.laplacian_matrix = None  # sparse, built lazily on the right device
        self.identity = nn.Parameter(torch.zeros(0))
        self.expression = nn.Parameter(torch.zeros(0, hm.n_expression))
        self.rotation = nn.Parameter(torch.zeros(0, 3))
        self.translation = nn.Parameter(torch.zeros(0, 3))
        self.register_buffer("face_vertices", scored_vertices(hm), persistent=False)
        self.gt_vertices: torch.Tensor | None = None
        self._n_vertices = V

    # ---------------------------------------------------------------- parameters
    def on_frames_ready(self, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Create the learnable per-frame tables: from a checkpoint's shapes, or tracking + noise.

        The start values (tracking, perturbed by ``init_noise``) are also what the identity and expression
        priors pull towards, and where held-out frames start their fit: the priors know only what a tracker
        would have given, never the truth.
        """
        f = self.frames
        g = torch.Generator().manual_seed(int(self.hparams.seed))
        noise = dict(self.hparams.init_noise or {})

        def jitter(x: torch.Tensor, std: float) -> torch.Tensor:
            return x + std * torch.randn(x.shape, generator=g).to(x) if std > 0 else x.clone()

        start = {
            "identity": jitter(f.identity, noise.get("identity", 0.0)),
            "expression": jitter(f.expression, noise.get("expression", 0.0)).clamp(0, 1),
            "rotation": jitter(f.rotation, math.radians(noise.get("rotation_deg", 0.0))),
            "translation": jitter(f.translation, noise.get("translation_m", 0.0)),
        }
        for k, v in start.items():
            self.register_buffer(f"prior_{k}", v.clone(), persistent=False)  # not aliased by the trained one
            from_ckpt = state_dict is not None and k in state_dict
            setattr(self, k, nn.Parameter(torch.zeros_like(state_dict[k]) if from_ckpt else v))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        gt = self.trainer.datamodule.root / "ground_truth" / "vertices.npy"
        if gt.exists() and self.gt_vertices is None:
            self.gt_vertices = torch.from_numpy(np.load(gt)).float()
        if self.trainer.max_epochs not in (None, -1) and self.trainer.max_epochs < total_epochs(self.stages):
            log.warning(
                "trainer.max_epochs=%s ends before the stages' %d epochs", self.trainer.max_epochs,
                total_epochs(self.stages),
            )  # fmt: skip

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        n = self.net
        return {
            "identity": [self.identity],
            "expression": [self.expression],
            "pose": [self.rotation, self.translation],
            "geometry": list(n.geometry.parameters()),
            "texture": [*n.texture.parameters(), *n.mapping.parameters(), *n.uv_embedding.parameters()],
            "background": [n.background],
        }

    @property
    def headmodel(self) -> nn.Module:
        """The head model inside the rendering core."""
        return self.net.headmodel

    @property
    def stage(self):
        return stage_at(self.stages, self.current_epoch)

    # ---------------------------------------------------------------- rendering
    def forward(self, index: torch.Tensor, soft_alpha: bool = False) -> dict[str, torch.Tensor]:
        """Render tracked frames ``index`` (B,) at the training size (see NHARenderer.forward)."""
        cams = self.frames.cameras_for(index, self.image_size)
        return self.net(
            self.identity, self.expression[index].clamp(0, 1), self.rotation[index], self.translation[index],
            cams, self.hparams.supersample, soft_alpha, self.hparams.sigma,
        )  # fmt: skip

    @torch.no_grad()
    def posed_vertices(self, index: torch.Tensor) -> torch.Tensor:
        """See :meth:`src.models.avatar.AvatarMixin.posed_vertices`."""
        expr, rot = self.expression[index].clamp(0, 1), self.rotation[index]
        refined = self.net.refined_canonical(self.identity, expr, rot)[0]
        R = axis_angle_to_matrix(rot)
        return refined @ R.transpose(1, 2) + self.translation[index][:, None]

    def render_params(self, identity, expression, rotation, translation, cameras: Cameras, joint_pose=None):
        """See :meth:`src.models.avatar.AvatarMixin.render_params`."""
        out = self.net(identity, expression, rotation, translation, cameras, self.hparams.supersample)
        return {"image": out["image"].clamp(0, 1), "mask": out["alpha"]}

    def personalized_vertices(self, expression: torch.Tensor, joint_pose=None) -> torch.Tensor:
        """See :meth:`src.models.avatar.AvatarMixin.personalized_vertices` (rotation-free condition)."""
        rot = torch.zeros(expression.shape[0], 3, device=expression.device)
        return self.net.refined_canonical(self.identity, expression, rot)[0]

    def texture_colors(self, points, face_idx, bary, expression):
        """SIREN colours at a neutral (frontal) view of the canonical surface."""
        hm = self.net.headmodel
        tri = hm.faces[face_idx]
        pos = (self.net.x_norm[tri] * bary[..., None]).sum(1)
        uv = (hm.uvs[hm.face_uvs[face_idx]] * bary[..., None]).sum(1)
        verts = self.personalized_vertices(expression[None])[0]
        from src.render import vertex_normals

        n = (vertex_normals(verts[None], hm.faces)[0][tri] * bary[..., None]).sum(1)
        n_cam = torch.nn.functional.normalize(n @ self.frames.R.T, dim=-1)
        cond = self.net.condition(expression[None], torch.zeros(1, 3, device=points.device))
        return self.net.colors_at(pos, uv, n_cam, cond)

    # ---------------------------------------------------------------- losses
    def _laplacian(self) -> torch.Tensor:
        if self.laplacian_matrix is None or self.laplacian_matrix.device != self.device:
            L = uniform_laplacian(self.net.faces, self._n_vertices)
            self.laplacian_matrix = L.to(self.device)
        return self.laplacian_matrix

    def _loss(self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor], weights: dict[str, float]):
        idx = batch["index"]
        mask = batch["mask"]
        full: list[torch.Tensor] = []

        def offsets_full() -> torch.Tensor:  # (B,V,3) offsets of every vertex, built once when needed
            if not full:
                zeros = out["verts"].new_zeros(out["verts"].shape)
                full.append(zeros.index_copy(1, self.net.active, out["offsets"]))
            return full[0]

        def lmk() -> torch.Tensor:
            cams = self.frames.cameras_for(idx, self.image_size)
            pred = cams.project(self.net.headmodel.landmarks(out["verts"]))
            return landmark_loss(pred, batch["landmarks68"], self.landmark_weights, None, self.image_size)

        def perceptual() -> torch.Tensor:
            if self.perceptual is None:
                raise RuntimeError("perceptual weight > 0 but no PerceptualLoss was built")
            return self.perceptual(out["image"], batch["image"])

        terms = {
            "rgb_l1": lambda: masked_l1(out["image"], batch["image"], torch.ones_like(mask),
                                        batch.get("segmentation"), self.class_weights),
            "perceptual": perceptual,
            "silhouette": lambda: silhouette_loss(out["alpha"], mask),
            "landmarks": lmk,
            "normals": lambda: normal_consistency(out["normals"], batch["normals"], mask),
            "normal_laplacian": lambda: laplacian_normal_loss(out["normals"], batch["normals"], mask),
            "semantic": lambda: semantic_loss(out["regions"], batch["segmentation"]),
            "expression_prior": lambda: expression_prior(self.expression[idx] - self.prior_expression[idx]),
            "identity_prior": lambda: identity_prior(self.identity - self.prior_identity),
            "laplacian": lambda: laplacian_smoothness(offsets_full(), self._laplacian()),
            "edge_length": lambda: edge_length_loss(
                out["canonical"], out["canonical"] - offsets_full(), self.edges),
            "offset_magnitude": lambda: offset_magnitude(out["offsets"]),
        }  # fmt: skip
        return WeightedLoss(weights)(terms)

    def _weights(self) -> dict[str, float]:
        return {**self.base_weights, **self.stage.loss}

    # ---------------------------------------------------------------- held-out frames
    def prepare_split(self, datamodule, split: str) -> None:
        """Fit expression and pose of the frames of ``split`` to their landmarks and pixels.

        Only per-frame parameters of those frames change; networks, identity and the training frames
        stay fixed. Runs when ``heldout_fit.steps`` > 0 (and never on the training split).
        """
        cfg = dict(self.hparams.heldout_fit or {})
        steps = int(cfg.get("steps", 0))
        if steps <= 0 or split == "train":
            return
        ds = datamodule.datasets[split]
        items = [ds[i] for i in range(len(ds))]
        batch = {k: torch.stack([it[k] for it in items]).to(self.device) for k in items[0]}
        idx = batch["index"]
        weights = dict(cfg.get("weights", {"landmarks": 1.0, "rgb_l1": 1.0}))
        # Held-out frames start from their tracking (so a repeated call starts afresh) plus the mean offset
        # training gave its frames' poses (mostly depth, which a single camera barely sees; small angles add).
        train_idx = torch.as_tensor(datamodule.splits["train"], device=self.device)
        d_rot = (self.rotation - self.prior_rotation).detach()[train_idx].mean(0)
        d_trans = (self.translation - self.prior_translation).detach()[train_idx].mean(0)
        expr = self.prior_expression[idx].clone().requires_grad_(True)
        rot = (self.prior_rotation[idx] + d_rot).requires_grad_(True)
        trans = (self.prior_translation[idx] + d_trans).requires_grad_(True)
        opt = torch.optim.Adam([expr, rot, trans], lr=float(cfg.get("lr", 2e-3)))
        frozen = [p for p in self.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        chunk = int(cfg.get("batch_size", 8))
        try:
            with torch.enable_grad():
                for _ in range(steps):
                    check_stop("held-out fit")
                    for s in range(0, len(idx), chunk):
                        sl = slice(s, s + chunk)
                        cams = self.frames.cameras_for(idx[sl], self.image_size)
                        out = self.net(self.identity, expr[sl].clamp(0, 1), rot[sl], trans[sl], cams,
                                       self.hparams.supersample)  # fmt: skip
                        sub = {k: v[sl] for k, v in batch.items()}
                        total, _ = self._loss(sub, out, weights)
                        opt.zero_grad()
                        total.backward()
                        opt.step()
        finally:
            for p in frozen:
                p.requires_grad_(True)
        with torch.no_grad():
            self.expression[idx] = expr.clamp(0, 1)
            self.rotation[idx] = rot
            self.translation[idx] = trans

    def on_test_start(self) -> None:
        self.prepare_split(self.trainer.datamodule, "test")

    # ---------------------------------------------------------------- steps
    def on_train_epoch_start(self) -> None:
        stage = self.stage
        opt = self.optimizers()
        opt = opt.optimizer if hasattr(opt, "optimizer") else opt
        for group in opt.param_groups:
            name = group["name"]
            lr = stage.lr.get(name, 0.0)
            group["lr"] = lr
            for p in group["params"]:
                p.requires_grad_(lr > 0)
        self.log("train/stage_index", float([s.name for s in self.stages].index(stage.name)))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        weights = self._weights()
        need_soft = weights.get("silhouette", 0) > 0 or weights.get("semantic", 0) > 0
        out = self(batch["index"], soft_alpha=need_soft)
        total, parts = self._loss(batch, out, weights)
        bs = batch["index"].shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=bs)
        return total

    def _eval_step(self, batch: dict[str, torch.Tensor], stage: str, metrics: ImageMetrics) -> dict[str, Any]:
        with torch.no_grad():
            out = self(batch["index"])
        pred = out["image"].clamp(0, 1)
        metrics.update(pred, batch["image"], batch.get("mask"))
        bs = batch["index"].shape[0]
        if self.gt_vertices is not None:
            gt = self.gt_vertices[batch["index"].cpu()].to(pred.device)
            fv = self.face_vertices
            for k, v in geometry_errors(out["verts"][:, fv], gt[:, fv]).items():
                self.log(f"{stage}/{k}", v.mean(), batch_size=bs)
        return {"pred": pred, "target": batch["image"], "normals": out["normals"]}

    def validation_step(self, batch, batch_idx):
        return self._eval_step(batch, "val", self.val_metrics)

    def test_step(self, batch, batch_idx):
        return self._eval_step(batch, "test", self.test_metrics)

    def configure_optimizers(self):
        groups = [{"params": ps, "name": name, "lr": 0.0} for name, ps in self.param_groups().items()]
        optimizer = hydra.utils.instantiate(self.hparams.optimizer)(params=groups)
        return {"optimizer": optimizer}
