"""Neural Head Avatars as one LightningModule with named training stages.

What lives where: the rendering core (head model + geometry MLP + SIREN texture) in
:mod:`src.models.nha.avatar_net`; the learnable per-frame parameters and their priors in
:mod:`src.models.nha.frame_tables`; the loss terms in :mod:`src.models.nha.losses`; the training schedule
in :mod:`src.models.nha.stages`; the held-out fit in :mod:`src.models.nha.heldout`. This module wires them
into the step contract of :class:`src.models.base_module.AvatarModule`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

import hydra
import torch
from torch import nn

from src.core.outputs import Batch, Out
from src.core.streams import BackgroundUnavailableError, warp_plate
from src.models.base_module import AvatarModule, Tensors
from src.models.nha.avatar_net import NHARenderer
from src.models.nha.frame_tables import TABLE_KEYS, FrameTables
from src.models.nha.heldout import HeldoutFit, StoredFit, concat_batches, fit_size, scaled_batch
from src.models.nha.losses import TERMS, FrameState, NHALoss
from src.models.nha.stages import Stage, apply_stage, parse_stages, stage_at, total_steps
from src.render import Cameras, vertex_normals

log = logging.getLogger(__name__)

BACKGROUNDS = ("auto", "plate", "learned")
GROUPS = {"identity", "expression", "pose", "geometry", "texture", "background"}


class NHAAvatar(AvatarModule):
    """Head model + geometry refinement MLP + FiLM-SIREN texture, trained in named stages.

    Args:
        headmodel: head-model config; renderer: MeshRenderer config.
        net: kwargs of :class:`NHARenderer` (regions, sub-network sizes).
        stages: name -> {steps, lr: {group: lr}, loss: {term: weight}} in order; groups are identity,
            expression, pose, geometry, texture, background.
        frozen: groups that no stage trains (their stage learning rates are dropped), e.g. the synthetic
            subject's exact identity, expression and pose.
        loss: :class:`NHALoss` settings ({"weights": {term: weight}, "class_weights", "landmark_weights",
            "perceptual"}).
        metrics: ImageMetrics settings.
        init_noise: std of noise added to the initial parameters: identity, expression, rotation_deg,
            translation_m (0 = start from the given tracking / ground truth).
        heldout_fit: fitting of held-out frames' expression and pose before they are scored, with the
            avatar frozen: {steps, lr, batch_size, weights: {term: weight}} (steps 0 = use the given
            parameters); see :class:`HeldoutFit`.
        supersample: render at this factor (anti-aliased edges).
        sigma: soft-silhouette sharpness in output pixels.
        optimizer: partial optimizer; its lr is replaced per group by the stage's lr.
        seed: seed of the initial-parameter noise.
        background: "auto" (the subject's background plate when it has one, refined by the learned grid;
            else the learned grid), "plate" (require a plate) or "learned" (the grid alone).
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
        background: str = "auto",
        frozen: list[str] | tuple[str, ...] = (),
    ) -> None:
        super().__init__(metrics)
        self.save_hyperparameters(logger=False)
        hm = hydra.utils.instantiate(headmodel)
        self.net = NHARenderer(hm, hydra.utils.instantiate(renderer), **net)
        self.stages = parse_stages(stages, GROUPS, set(TERMS), tuple(frozen or ()))
        uses_perceptual = float(loss["weights"].get("perceptual", 0)) > 0 or any(
            s.loss.get("perceptual", 0) > 0 for s in self.stages
        )
        dense = str(loss.get("landmark_points", "68")) == "dense"
        self.loss_fn = NHALoss(self.net.faces, hm.template.shape[0], self.net.active, self.net.region_allowed,
                               hm.landmarks478 if dense else hm.landmarks, loss, uses_perceptual,
                               getattr(hm, "dense_weights", None))  # fmt: skip
        self.tables = FrameTables(hm.n_expression)
        self.heldout = HeldoutFit.from_config(heldout_fit)
        if background not in BACKGROUNDS:
            raise ValueError(f"model.background must be one of {BACKGROUNDS}, got {background!r}")
        self.plate: torch.Tensor | None = None  # set by attach (not in checkpoints: the subject holds it)
        self.plate_motion: torch.Tensor | None = None

    def on_subject(self, subject) -> None:
        """Take the subject's background plate (see ``background``)."""
        mode = self.hparams.background
        if mode == "learned" or subject.background is None:
            if mode == "plate":
                raise BackgroundUnavailableError(
                    f"model.background=plate but {subject.root} has no background plate; film with a still "
                    "camera and preprocess with preprocess.background=plate, or set model.background=auto"
                )
            self.plate = self.plate_motion = None
            return
        motion = subject.background_motion
        if motion is None:
            motion = torch.eye(2, 3).expand(subject.n_frames, 2, 3).clone()
        self.plate = subject.background[None].to(self.device)
        self.plate_motion = motion.to(self.device)

    def _apply(self, fn, *args, **kwargs):  # move the plate (a plain attribute) along with the module
        if self.plate is not None:
            self.plate, self.plate_motion = fn(self.plate), fn(self.plate_motion)
        return super()._apply(fn, *args, **kwargs)

    def frame_background(self, index: torch.Tensor) -> torch.Tensor | None:
        """(B,3,H,W) the plate as frames ``index`` see it (camera shake applied), or None."""
        if self.plate is None:
            return None
        return warp_plate(self.plate, self.plate_motion[index.to(self.plate_motion.device)])

    # ---------------------------------------------------------------- parameters
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sd = checkpoint["state_dict"]
        for k in TABLE_KEYS:  # checkpoints written before the tables had their own module
            if k in sd and f"tables.{k}" not in sd:
                sd[f"tables.{k}"] = sd.pop(k)
        super().on_load_checkpoint(checkpoint)

    def on_frames_ready(self, state_dict: Tensors | None = None) -> None:
        """Create the learnable per-frame tables (see :class:`FrameTables`)."""
        self.tables.build(self.frames, self.hparams.init_noise, self.hparams.seed, state_dict, "tables.")

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameter group name -> parameters (the names stages give learning rates to)."""
        n, t = self.net, self.tables
        return {
            "identity": [t.identity],
            "expression": [t.expression],
            "pose": [t.rotation, t.translation],
            "geometry": list(n.geometry.parameters()),
            "texture": [*n.texture.parameters(), *n.mapping.parameters(), *n.uv_embedding.parameters()],
            "background": [n.background],
        }

    def avatar_params(self) -> Tensors:
        """The tracked parameters with the trained per-frame tables in place (reenactment starts here)."""
        from_frames = {k: getattr(self.frames, k) for k in ("joint_pose", "K", "R", "t")}
        return {**from_frames, **{k: getattr(self.tables, k).detach() for k in TABLE_KEYS}}

    @property
    def headmodel(self) -> nn.Module:
        """The head model inside the rendering core."""
        return self.net.headmodel

    @property
    def stage(self) -> Stage:
        """The training stage of the current optimiser step."""
        return stage_at(self.stages, self.global_step)

    # ---------------------------------------------------------------- rendering
    def forward(
        self,
        index: torch.Tensor,
        soft_alpha: bool = False,
        size: tuple[int, int] | None = None,
        supersample: int | None = None,
    ) -> Tensors:
        """Render tracked frames ``index`` (B,) at ``size`` (None: the training size) and ``supersample``
        (None: the model's) (see :meth:`NHARenderer.forward`)."""
        t = self.tables
        cams = self.frames.cameras_for(index, self.image_size).resized(size or self.image_size)
        ss = self.hparams.supersample if supersample is None else supersample
        return self.net(
            t.identity, t.expression[index].clamp(0, 1), t.rotation[index], t.translation[index], cams,
            ss, soft_alpha, self.hparams.sigma, self.frame_background(index),
        )  # fmt: skip

    @torch.no_grad()
    def posed_vertices(self, index: torch.Tensor) -> torch.Tensor:
        """See :meth:`src.models.avatar.AvatarMixin.posed_vertices`."""
        t = self.tables
        expr, rot = t.expression[index].clamp(0, 1), t.rotation[index]
        refined = self.net.refined_canonical(t.identity, expr, rot)[0]
        return self.net.pose(refined, rot, t.translation[index])

    def render_params(self, identity, expression, rotation, translation, cameras: Cameras, joint_pose=None):
        """See :meth:`src.models.avatar.AvatarMixin.render_params`."""
        bg = None if self.plate is None else self.plate.expand(expression.shape[0], -1, -1, -1)
        out = self.net(
            identity, expression, rotation, translation, cameras, self.hparams.supersample, background=bg
        )
        return {Out.IMAGE: out[Out.IMAGE].clamp(0, 1), Out.COVERAGE: out[Out.COVERAGE]}

    def personalized_vertices(self, expression: torch.Tensor, joint_pose=None) -> torch.Tensor:
        """See :meth:`src.models.avatar.AvatarMixin.personalized_vertices` (rotation-free condition)."""
        rot = torch.zeros(expression.shape[0], 3, device=expression.device)
        return self.net.refined_canonical(self.tables.identity, expression, rot)[0]

    def texture_colors(self, points, face_idx, bary, expression):
        """SIREN colours at a neutral (frontal) view of the canonical surface."""
        hm = self.net.headmodel
        tri = hm.faces[face_idx]
        pos = (self.net.x_norm[tri] * bary[..., None]).sum(1)
        uv = (hm.uvs[hm.face_uvs[face_idx]] * bary[..., None]).sum(1)
        verts = self.personalized_vertices(expression[None])[0]
        n = (vertex_normals(verts[None], hm.faces)[0][tri] * bary[..., None]).sum(1)
        n_cam = torch.nn.functional.normalize(n @ self.frames.R.T, dim=-1)
        cond = self.net.condition(expression[None], torch.zeros(1, 3, device=points.device))
        return self.net.colors_at(pos, uv, n_cam, cond)

    # ---------------------------------------------------------------- losses
    def stage_weights(self) -> dict[str, float]:
        """Loss weights of the current stage (its overrides on top of the base weights)."""
        return {**self.loss_fn.base_weights, **self.stage.loss}

    def train_outputs(self, batch: Tensors) -> Tensors:
        """Render the batch at the stage's resolution and supersampling."""
        stage = self.stage
        soft = self.loss_fn.needs_soft_alpha(self.stage_weights())
        size = fit_size(self.image_size, stage.resolution)
        return self(batch[Batch.INDEX], soft_alpha=soft, size=size, supersample=stage.supersample)

    def loss_dict(self, batch: Tensors, out: Tensors) -> tuple[torch.Tensor, Tensors]:
        """The stage-weighted loss of tracked frames (see :class:`NHALoss`), at the size ``out`` was
        rendered at (the batch is scaled to it)."""
        size = tuple(out[Out.IMAGE].shape[-2:])
        batch = scaled_batch(batch, size)
        state = self.frame_state(batch[Batch.INDEX], size=size)
        return self.loss_fn(batch, out, state, self.stage_weights())

    def frame_state(
        self, index: torch.Tensor, expression: torch.Tensor | None = None, size: tuple[int, int] | None = None
    ) -> FrameState:
        """What the prior and landmark terms see of frames ``index`` (B,) (``expression`` (B,Ne) replaces
        the table's, e.g. during the held-out fit)."""
        t = self.tables
        return FrameState(
            identity=t.identity,
            prior_identity=t.prior_identity,
            expression=t.expression[index] if expression is None else expression,
            prior_expression=t.prior_expression[index],
            cameras=self.frames.cameras_for(index, self.image_size).resized(size or self.image_size),
        )

    # ---------------------------------------------------------------- held-out frames
    def prepare_split(self, split: str, batches: Iterable[Tensors]) -> None:
        """Fit expression and pose of the frames of ``split`` to their landmarks and pixels.

        Only those frames' per-frame parameters change; networks, identity and the training frames stay
        fixed. Each fit starts afresh from the frames' tracking plus the mean offset training gave its
        frames' poses (mostly depth, which a single camera barely sees), at ``heldout_fit.resolution``
        (coarse and fast; expression and pose do not depend on the image size). The result is stored
        beside the checkpoint the weights came from (:class:`StoredFit`), so the test loop, evaluate.py
        and reenact.py fit once. Runs when ``heldout_fit.steps`` > 0, never on the training split; one
        pass under ``fast_dev_run``.
        """
        fit = self.heldout
        if fit.steps <= 0 or split == "train":
            return
        trainer = self._trainer
        if trainer is not None and trainer.fast_dev_run:
            fit = dataclasses.replace(fit, steps=1)
        batch = {k: v.to(self.device) for k, v in concat_batches(batches).items()}
        idx = batch[Batch.INDEX]
        t = self.tables
        d_rot, d_trans = t.pose_offset(torch.as_tensor(self.splits["train"], device=self.device))
        start = {
            "expression": t.prior_expression[idx],
            "rotation": t.prior_rotation[idx] + d_rot,
            "translation": t.prior_translation[idx] + d_trans,
        }
        store = StoredFit(self.checkpoint_file)
        key = store.key(idx, fit.settings(), start) if store.path(split) is not None else None
        stored = store.load(split, key) if key is not None else None
        if stored is None:
            expr, rot, trans = self._fit_frames(fit, batch, start)
            if key is not None and fit.steps == self.heldout.steps:
                store.save(split, key, {"expression": expr, "rotation": rot, "translation": trans})
        else:
            log.info("held-out fit of the %s frames reused from beside %s", split, self.checkpoint_file)
            expr, rot, trans = (stored[k].to(t.expression) for k in ("expression", "rotation", "translation"))
        with torch.no_grad():
            t.expression[idx] = expr
            t.rotation[idx] = rot
            t.translation[idx] = trans

    def _fit_frames(
        self, fit: HeldoutFit, batch: Tensors, start: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run ``fit`` on the frames of ``batch`` (every key (N,...)) from ``start`` (expression, rotation,
        translation (N,...)); returns the fitted expression, rotation, translation."""
        idx = batch[Batch.INDEX]
        t = self.tables
        size = fit_size(self.image_size, fit.resolution)
        small = scaled_batch(batch, size)
        ss = self.hparams.supersample if fit.supersample is None else fit.supersample
        background = self.frame_background(idx)

        def loss_of(expr, rot, trans, rows):
            cams = self.frames.cameras_for(idx[rows], self.image_size).resized(size)
            bg = None if background is None else background[rows]
            out = self.net(t.identity.detach(), expr, rot, trans, cams, ss, background=bg)
            sub = {k: v[rows] for k, v in small.items()}
            return self.loss_fn(sub, out, self.frame_state(idx[rows], expr, size), fit.weights)

        return fit.run(loss_of, start["expression"], start["rotation"], start["translation"])

    # ---------------------------------------------------------------- schedule
    def on_fit_start(self) -> None:
        steps = total_steps(self.stages)
        if self.trainer.max_steps not in (None, -1) and self.trainer.max_steps < steps:
            log.warning("trainer.max_steps=%s ends before the stages' %d steps", self.trainer.max_steps,
                        steps)  # fmt: skip
        self._applied_stage = None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Switch the optimiser's groups to the stage of this step (when it changes, and after a resume)."""
        stage = self.stage
        if getattr(self, "_applied_stage", None) != stage.name:
            apply_stage(self.optimizers(), stage)
            self._applied_stage = stage.name
        self.log("train/stage_index", float([s.name for s in self.stages].index(stage.name)))

    def configure_optimizers(self):
        groups = [{"params": ps, "name": name, "lr": 0.0} for name, ps in self.param_groups().items()]
        optimizer = hydra.utils.instantiate(self.hparams.optimizer)(params=groups)
        return {"optimizer": optimizer}
