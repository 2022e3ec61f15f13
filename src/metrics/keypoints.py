"""AKD: average keypoint distance between a predicted frame and its ground truth, overall and per region.

The same landmark detector runs on both images; the metric is the mean Euclidean distance between
corresponding points, in pixels of an image scaled to ``size`` (256 by convention, so numbers from
different resolutions compare). Face-reenactment papers call this AKD and use it to judge whether an
avatar's expression and pose match the real frame. Named regions (e.g. mouth, eyes) are point-index
subsets reported apart, since a whole-face mean hides a wrong mouth.

The detector is injected (this layer does not know a landmark backend): the real-video benchmark passes
mediapipe FaceMesh (:data:`src.preprocess.landmarks.FACEMESH_REGIONS` gives its mouth and eye indices).
A frame where the detector finds no face in either image is left out of the means and counted
(``akd_missed``): a blank avatar frame must not score 0 px.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torchmetrics import Metric

Detector = Callable[[np.ndarray], "np.ndarray | None"]


def keypoint_distances(
    pred: np.ndarray, gt: np.ndarray, regions: Mapping[str, Sequence[int]], scale: float = 1.0
) -> dict[str, float]:
    """Mean point distance of one frame, overall and per region.

    Args:
        pred: (K,2) points detected on the prediction (pixels).
        gt: (K,2) points detected on the ground truth (pixels).
        regions: region name -> point indices.
        scale: multiplies the distances (e.g. 256 / image width).

    Returns:
        {"all": d, <region>: d_region, ...} in scaled pixels.
    """
    d = np.linalg.norm(pred.astype(np.float64) - gt.astype(np.float64), axis=-1) * scale
    out = {"all": float(d.mean())}
    for name, idx in regions.items():
        out[name] = float(d[np.asarray(idx, dtype=np.int64)].mean())
    return out


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) float in [0,1] -> (B,H,W,3) uint8."""
    arr = images.detach().float().clamp(0, 1).mul(255).round().byte()
    return arr.permute(0, 2, 3, 1).cpu().numpy()


class KeypointDistance(Metric):
    """AKD over frames: mean keypoint distance (scaled pixels), overall and per named region.

    Args:
        detector: (H,W,3) uint8 RGB -> (K,2) float pixels of the single face, or None (no face).
        regions: region name -> point indices, each reported as ``akd_<name>_px``.
        size: distances are in pixels of an image whose width is ``size``.
        **kwargs: passed to :class:`torchmetrics.Metric`.
    """

    full_state_update = False

    def __init__(
        self,
        detector: Detector,
        regions: Mapping[str, Sequence[int]] | None = None,
        size: int = 256,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.detector = detector
        self.regions = {k: list(v) for k, v in (regions or {}).items()}
        self.size = int(size)
        for name in ("all", *self.regions):
            self.add_state(
                f"sum_{name}", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
            )
        self.add_state("n", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("missed", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        """Add a batch.

        Args:
            pred: (B,3,H,W) predictions in [0,1].
            gt: (B,3,H,W) ground truth in [0,1].
        """
        if pred.shape != gt.shape:
            raise ValueError(
                f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape"
            )
        scale = self.size / pred.shape[-1]
        for p_img, g_img in zip(_to_uint8(pred), _to_uint8(gt)):
            p_pts, g_pts = self.detector(p_img), self.detector(g_img)
            if p_pts is None or g_pts is None:
                self.missed += 1
                continue
            d = keypoint_distances(p_pts, g_pts, self.regions, scale)
            for name, v in d.items():
                setattr(self, f"sum_{name}", getattr(self, f"sum_{name}") + v)
            self.n += 1

    def compute(self) -> dict[str, float]:
        """``akd_px``, ``akd_<region>_px`` (NaN without a frame with a face in both), ``akd_frames``,
        ``akd_missed``."""
        n = int(self.n)
        out = {}
        for name in ("all", *self.regions):
            key = "akd_px" if name == "all" else f"akd_{name}_px"
            out[key] = float(getattr(self, f"sum_{name}") / n) if n else float("nan")
        out["akd_frames"] = n
        out["akd_missed"] = int(self.missed)
        return out
