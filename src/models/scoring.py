"""Scores of one split, accumulated over batches: the image metrics and, with ground truth, geometry.

The test loop (``AvatarModule.test_step``) and evaluate.py with ``ckpt_path`` (:func:`score_split`) both
feed every batch through :meth:`src.models.base_module.AvatarModule.score_batch` into a
:class:`SplitScores`, so one checkpoint gets one set of numbers whichever way it is scored. The PNGs
evaluate.py writes are a by-product: the scores are taken on the float predictions, before 8-bit rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric
from tqdm import tqdm

from src.core.outputs import Batch, Out
from src.metrics.geometry import geometry_errors
from src.metrics.suite import ImageMetrics
from src.utils.io import to_uint8, write_png

GEOMETRY_KEYS = ("geometry_mean_mm", "geometry_hausdorff_mm", "geometry_aligned_mean_mm")


class GeometryMetric(Metric):
    """Mean over frames of the per-frame geometry errors of :func:`src.metrics.geometry.geometry_errors`.

    The mean is over frames whatever the batch size (sums and a frame count, reduced across processes).
    """

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("sums", torch.zeros(len(GEOMETRY_KEYS), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        """Accumulate scored vertices ``pred``, ``gt`` (B,K,3) in metres."""
        errors = geometry_errors(pred.float(), gt.to(pred).float())
        self.sums += torch.stack([errors[k].double().sum() for k in GEOMETRY_KEYS]).to(self.sums)
        self.total += pred.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        """{key: mean over frames} in mm."""
        if int(self.total) == 0:
            raise ValueError("GeometryMetric: no frames accumulated")
        return {k: self.sums[i] / self.total for i, k in enumerate(GEOMETRY_KEYS)}


class SplitScores(nn.Module):
    """Image metrics (unmasked and masked) and geometry errors of one split.

    Args:
        metrics: the :class:`ImageMetrics` to accumulate into.
    """

    def __init__(self, metrics: ImageMetrics) -> None:
        super().__init__()
        self.images = metrics
        self.geometry = GeometryMetric()

    @torch.no_grad()
    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        vertices: torch.Tensor | None = None,
        gt_vertices: torch.Tensor | None = None,
        landmarks: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> None:
        """Accumulate a batch.

        Args:
            pred, target: (B,3,H,W) in [0,1]; mask: (B,1,H,W) ground-truth matte or None.
            vertices, gt_vertices: (B,K,3) predicted and true scored vertices (metres), or None.
            landmarks: (B,68,2) the frames' landmarks (CSIM's face alignment), or None.
            valid: (B,1,H,W) pixels inside the video frame (see :meth:`ImageMetrics.update`), or None.
        """
        self.images.update(pred, target, mask, landmarks, valid)
        if vertices is not None and gt_vertices is not None:
            self.geometry.update(vertices, gt_vertices)

    def compute(self) -> dict[str, Any]:
        """The image metrics' results (see :meth:`ImageMetrics.compute`) plus geometry when accumulated."""
        out = self.images.compute()
        if self.geometry.update_called:
            out.update({k: float(v) for k, v in self.geometry.compute().items()})
        return out

    def reset(self) -> None:
        """Clear the accumulated state."""
        self.images.reset()
        self.geometry.reset()


def score_split(
    model,
    batches: Iterable[Mapping[str, torch.Tensor]],
    split: str,
    metrics_cfg: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score an avatar on the frames of one split, as its test loop does.

    Runs the avatar's held-out preparation (:meth:`AvatarModule.prepare_split`) on the split's frames,
    then :meth:`AvatarModule.score_batch` on every batch into a fresh :class:`SplitScores`.

    Args:
        model: a trained avatar (with its subject attached, see ``AvatarModule.attach``).
        batches: the split's batches (e.g. the data module's ``test_dataloader()``); a re-iterable.
        split: "train", "val" or "test".
        metrics_cfg: :meth:`ImageMetrics.from_config` settings.
        out_dir: when given, write ``out_dir/{pred,gt,mask}/<frame>.png`` (8-bit; not what is scored).

    Returns:
        The results of :meth:`SplitScores.compute`.
    """
    device = model.device
    scores = SplitScores(ImageMetrics.from_config(metrics_cfg)).to(device)
    model.prepare_split(split, batches)
    for batch in tqdm(batches, desc=f"score {split}", unit="batch", disable=not progress):
        batch = {k: v.to(device) for k, v in batch.items()}
        images = model.score_batch(batch, scores)
        if out_dir is not None:
            write_frames(Path(out_dir), batch, images[Out.IMAGE])
    return scores.compute()


def write_frames(out: Path, batch: Mapping[str, torch.Tensor], pred: torch.Tensor) -> None:
    """Write predictions (B,3,H,W), the batch's images and masks as 8-bit PNGs named by frame number."""
    pred = pred.detach().cpu()
    for j, i in enumerate(batch[Batch.INDEX].tolist()):
        name = f"{i:06d}.png"
        write_png(out / "pred" / name, to_uint8(pred[j].permute(1, 2, 0)))
        write_png(out / "gt" / name, to_uint8(batch[Batch.IMAGE][j].cpu().permute(1, 2, 0)))
        if Batch.MASK in batch:
            write_png(out / "mask" / name, to_uint8(batch[Batch.MASK][j, 0].cpu()))
