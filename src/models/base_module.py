"""The one step contract of the avatar families: :class:`AvatarModule`.

A family implements what differs (as nerfstudio's ``Model`` does with ``get_outputs`` and
``get_loss_dict``):

* ``forward(index, soft_alpha)``: outputs of tracked frames, a dict keyed by :class:`src.core.outputs.Out`;
* :meth:`AvatarModule.loss_dict`: ``(total, {term: value})`` of a training batch and its outputs;
* optionally :meth:`AvatarModule.train_outputs` (what training renders), :meth:`AvatarModule.eval_losses`
  (extra per-batch scalars logged by validation/test), :meth:`AvatarModule.optimisation_step` (a family
  with manual optimisation, e.g. a GAN, does its optimiser steps there) and
  :meth:`src.models.avatar.AvatarMixin.prepare_split` (held-out fits before scoring).

This class owns ``training_step``, ``validation_step`` and ``test_step`` once; the test loop and evaluate.py
score every batch through the same :meth:`AvatarModule.score_batch` (see :mod:`src.models.scoring`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from src.core.outputs import Batch, Out
from src.core.subject import SubjectData
from src.metrics.geometry import scored_vertices
from src.metrics.suite import ImageMetrics
from src.models.avatar import AvatarMixin
from src.models.frame_params import FrameParams
from src.models.scoring import SplitScores
from src.utils.config import to_plain

Tensors = dict[str, torch.Tensor]


class AvatarModule(AvatarMixin, pl.LightningModule):
    """Base of avatar LightningModules.

    Holds the subject's per-frame parameters (``self.frames``, taken from the :class:`SubjectData` given to
    :meth:`attach` and restored from checkpoints), the image size, and the val/test :class:`SplitScores`
    logged as ``val/psnr``, ``test/geometry_mean_mm`` etc. Checkpoints also store the model class, the image
    size, the splits and the data config, so that :func:`src.models.loading.load_avatar` can rebuild the
    avatar (and its data module, for scoring).

    Args:
        metrics: :class:`ImageMetrics` settings of the validation and test scores.
    """

    def __init__(self, metrics: Mapping[str, Any]) -> None:
        super().__init__()
        self.frames = FrameParams()
        self.val_scores = SplitScores(ImageMetrics(**metrics))
        self.test_scores = SplitScores(ImageMetrics(**metrics))
        self.image_size: tuple[int, int] | None = None
        self.subject: SubjectData | None = None
        self.splits: dict[str, tuple[int, ...]] = {}
        self.data_config: dict[str, Any] | None = None
        # the checkpoint these weights came from (set by load_avatar and the test loop); held-out fits
        # are stored beside it and reused
        self.checkpoint_file: Path | None = None

    # ---------------------------------------------------------------- data handed to the model
    def attach(self, subject: SubjectData, data_config: Mapping[str, Any] | None = None) -> None:
        """Give the model its subject (call once before fitting or scoring).

        A fresh model takes the subject's per-frame parameters; a model restored from a checkpoint keeps
        its trained ones (the subject must have as many frames) and takes the splits and ground truth.

        Args:
            subject: the subject (see :meth:`AvatarDataModule.subject`).
            data_config: a plain config that rebuilds the data module (stored in checkpoints).
        """
        if self.frames.n_frames == 0:
            self.headmodel.check_frame_params(subject.params)  # one line when fitted with another model
            self.frames.load(subject.params)
            self.on_frames_ready()
        elif self.frames.n_frames != subject.n_frames:
            raise ValueError(
                f"the avatar has {self.frames.n_frames} frames but the subject {subject.root} has "
                f"{subject.n_frames}; attach the subject it was trained on"
            )
        self.subject = subject
        self.image_size = subject.image_size
        self.splits = dict(subject.splits)
        if data_config is not None:
            self.data_config = to_plain(data_config)
        self.on_subject(subject)

    def setup(self, stage: str) -> None:
        """Lightning hook: a model fitted or tested with a data module takes its subject from it.

        ``trainer.fit(model, datamodule=dm)`` (or ``test``/``validate``) is therefore all a fresh model
        needs; :meth:`attach` remains for scoring and reenacting outside a trainer.
        """
        dm = self._trainer.datamodule if self._trainer is not None else None
        if self.subject is None and dm is not None and hasattr(dm, "subject"):
            self.attach(dm.subject(), data_config=dm.config())

    def on_subject(self, subject: SubjectData) -> None:
        """Called at the end of :meth:`attach` (a family takes what else it uses of the subject)."""

    def on_frames_ready(self, state_dict: Tensors | None = None) -> None:
        """Called once the frame parameters are known (attach) or about to be restored (checkpoint)."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.frames.prepare_for_state_dict(checkpoint["state_dict"], "frames.")
        self.image_size = tuple(checkpoint.get("image_size") or self.image_size or (0, 0))
        self.splits = {k: tuple(v) for k, v in (checkpoint.get("splits") or self.splits).items()}
        self.data_config = checkpoint.get("data_config", self.data_config)
        self.on_frames_ready(checkpoint["state_dict"])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["image_size"] = list(self.image_size) if self.image_size else None
        checkpoint["model_target"] = f"{type(self).__module__}.{type(self).__qualname__}"
        checkpoint["splits"] = {k: list(v) for k, v in self.splits.items()}
        if self.data_config is not None:
            checkpoint["data_config"] = self.data_config
        # plain containers only, so checkpoints load with torch.load(weights_only=True)
        checkpoint["hyper_parameters"] = to_plain(checkpoint.get("hyper_parameters", {}))

    # ---------------------------------------------------------------- what families implement
    @abstractmethod
    def forward(self, index: torch.Tensor, soft_alpha: bool = False) -> Tensors:
        """Outputs of tracked frames ``index`` (B,), a dict keyed by :class:`src.core.outputs.Out`."""

    def loss_dict(self, batch: Tensors, out: Tensors) -> tuple[torch.Tensor, Tensors]:
        """Total training loss of a batch and its named terms (a family with manual optimisation
        overrides :meth:`optimisation_step` instead)."""
        raise NotImplementedError(f"{type(self).__name__} gives neither loss_dict nor optimisation_step")

    def train_outputs(self, batch: Tensors) -> Tensors:
        """Outputs the training loss needs (default: the frames rendered with their soft silhouette)."""
        return self(batch[Batch.INDEX], soft_alpha=True)

    def eval_outputs(self, batch: Tensors) -> Tensors:
        """Outputs scored in validation/test (inference: no soft silhouette, no gradients)."""
        with torch.no_grad():
            return self(batch[Batch.INDEX], soft_alpha=False)

    def eval_losses(self, batch: Tensors, out: Tensors) -> Tensors:
        """Extra per-batch scalars validation/test log as ``<split>/<name>`` (default none)."""
        return {}

    def optimisation_step(self, batch: Tensors, batch_idx: int) -> tuple[torch.Tensor, Tensors]:
        """One training step's loss and terms; families with manual optimisation also step here."""
        return self.loss_dict(batch, self.train_outputs(batch))

    # ---------------------------------------------------------------- the steps, once
    def training_step(self, batch: Tensors, batch_idx: int) -> torch.Tensor | None:
        total, parts = self.optimisation_step(batch, batch_idx)
        bs = batch[Batch.INDEX].shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=bs)
        return total if self.automatic_optimization else None

    def score_batch(self, batch: Tensors, scores: SplitScores) -> Tensors:
        """Render a batch for scoring and accumulate its scores (the test loop's and evaluate.py's step).

        Returns:
            the evaluation outputs, with :attr:`Out.IMAGE` clamped to [0,1].
        """
        out = self.eval_outputs(batch)
        pred = out[Out.IMAGE].clamp(0, 1)
        verts, gt = None, None
        if Out.VERTICES in out and self._has_ground_truth_geometry():
            ids = self._scored_vertex_ids()
            verts = out[Out.VERTICES][:, ids]
            gt = self.subject.gt_vertices[batch[Batch.INDEX].cpu()][:, ids.cpu()].to(verts)
        scores.update(
            pred, batch[Batch.IMAGE], batch.get(Batch.MASK), verts, gt, batch.get(Batch.LANDMARKS68),
            batch.get(Batch.VALID),
        )  # fmt: skip
        return {**out, Out.IMAGE: pred}

    def _has_ground_truth_geometry(self) -> bool:
        """True when the subject has ground-truth vertices of this avatar's head model (a subject rendered
        with another head model, e.g. ICT under FLAME, has none to compare with)."""
        if self.subject is None or self.subject.gt_vertices is None:
            return False
        hm = self.headmodel
        return self.subject.gt_vertices.shape[1] == getattr(hm, "n_base_vertices", hm.template.shape[0])

    def _scored_vertex_ids(self) -> torch.Tensor:
        if getattr(self, "_scored_ids", None) is None or self._scored_ids.device != self.device:
            self._scored_ids = scored_vertices(self.headmodel).to(self.device)
        return self._scored_ids

    def _eval_step(self, batch: Tensors, split: str, scores: SplitScores) -> Tensors:
        out = self.score_batch(batch, scores)
        extra = self.eval_losses(batch, out)
        if extra:
            self.log_dict(
                {f"{split}/{k}": v for k, v in extra.items()}, batch_size=batch[Batch.INDEX].shape[0]
            )
        return {k: v.detach() for k, v in out.items() if k in _IMAGE_KEYS}

    def validation_step(self, batch: Tensors, batch_idx: int) -> Tensors:
        return self._eval_step(batch, "val", self.val_scores)

    def test_step(self, batch: Tensors, batch_idx: int) -> Tensors:
        return self._eval_step(batch, "test", self.test_scores)

    def on_test_start(self) -> None:
        if self.trainer.ckpt_path:  # the checkpoint being scored (held-out fits are stored beside it)
            self.checkpoint_file = Path(self.trainer.ckpt_path)
        else:  # the weights in memory: those the run's last checkpoint holds
            last = [cb.path for cb in self.trainer.callbacks if type(cb).__name__ == "LastCheckpoint"]
            self.checkpoint_file = last[0] if last and Path(last[0]).is_file() else None
        loader = self.trainer.test_dataloaders
        if isinstance(loader, DataLoader):  # every test frame in order, not just this process's shard
            loader = DataLoader(loader.dataset, batch_size=loader.batch_size, shuffle=False)
        self.prepare_split("test", loader)

    def _log_scores(self, split: str, scores: SplitScores) -> None:
        values = scores.compute()
        logged = {
            f"{split}/{k}": float(v) for k, v in values.items() if _is_number(v) and not k.startswith("num_")
        }
        self.log_dict(logged, sync_dist=True)
        scores.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val", self.val_scores)

    def on_test_epoch_end(self) -> None:
        self._log_scores("test", self.test_scores)

    # ---------------------------------------------------------------- inference interface
    @torch.no_grad()
    def predict_frames(self, index: torch.Tensor) -> torch.Tensor:
        """Images of frames ``index`` (B,) as (B,3,H,W) in [0,1] (the interface evaluate/reenact use)."""
        return self(index, soft_alpha=False)[Out.IMAGE].clamp(0, 1)


# outputs an evaluation step hands to callbacks (images only; vertices etc. stay in the step)
_IMAGE_KEYS = frozenset({Out.IMAGE, Out.NORMALS, Out.CONDITION, Out.COVERAGE, Out.MATTE})


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) or (torch.is_tensor(v) and v.numel() == 1)
