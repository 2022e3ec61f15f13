"""AKD (src/metrics/keypoints.py): against a per-point loop, regions apart, frames without a face counted."""

from __future__ import annotations

import math

import numpy as np
import torch

from src.metrics.keypoints import KeypointDistance, keypoint_distances


def test_keypoint_distances_match_a_loop():
    rng = np.random.default_rng(0)
    gt, pred = rng.uniform(0, 64, (30, 2)), rng.uniform(0, 64, (30, 2))
    regions = {"mouth": [1, 4, 9], "eyes": list(range(20, 30))}
    got = keypoint_distances(pred, gt, regions, scale=2.0)
    loop = {}
    for name, idx in {"all": range(30), **regions}.items():
        d = [math.hypot(pred[i, 0] - gt[i, 0], pred[i, 1] - gt[i, 1]) * 2.0 for i in idx]
        loop[name] = sum(d) / len(d)
    assert got.keys() == loop.keys()
    for k in loop:
        assert abs(got[k] - loop[k]) < 1e-9


def test_keypoint_metric_scales_to_256_and_counts_missed_faces():
    """A detector that reads points off the image: a shift of 1 px at 128 px is 2 px at 256."""

    def detect(image: np.ndarray) -> np.ndarray | None:
        ys, xs = np.nonzero(image[..., 0] > 127)
        if len(xs) == 0:
            return None
        return np.stack([xs, ys], 1)[:4].astype(np.float32)

    gt = torch.zeros(3, 3, 128, 128)
    gt[:, :, 10, 10:14] = 1
    pred = torch.zeros_like(gt)
    pred[:2, :, 10, 11:15] = 1  # frames 0, 1 shifted right by 1 px; frame 2 blank: no face
    m = KeypointDistance(detect, {"first": [0]}, size=256)
    m.update(pred, gt)
    out = m.compute()
    assert out["akd_frames"] == 2 and out["akd_missed"] == 1
    assert abs(out["akd_px"] - 2.0) < 1e-6 and abs(out["akd_first_px"] - 2.0) < 1e-6
    empty = KeypointDistance(detect).compute()
    assert math.isnan(empty["akd_px"]) and empty["akd_frames"] == 0
