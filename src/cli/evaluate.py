"""Evaluate predicted frames against ground truth: PSNR, SSIM, LPIPS, FID (unmasked and masked), CSIM.

Usage::

    python evaluate.py pred_dir=renders/test gt_dir=data/subject/test/images [mask_dir=.../masks]
    python evaluate.py ... out_dir=results/subject metrics.required=true
    python evaluate.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt [split=test]
    python evaluate.py sweep_dir=logs/train/multiruns/<time>   # one comparison table over a multirun

With ``ckpt_path`` the avatar renders the held-out frames of the subject it was trained on (its data
config travels in the checkpoint) and scores them exactly as the training run's test loop does: the same
step (``AvatarModule.score_batch``, held-out fit included) and the same metric objects, on the float
predictions (see :mod:`src.models.scoring`), so one checkpoint gets one set of numbers. Where the subject
has ground-truth geometry the mean and Hausdorff vertex distances (face region, mm) are added. The frames
are also written to ``out_dir/{pred,gt,mask}`` as 8-bit PNGs; scoring those folders (``pred_dir=...``)
differs from the checkpoint's scores by the 8-bit rounding of the predictions only.

Results go to ``out_dir`` (default: the hydra run dir ``logs/evaluate/runs/<timestamp>``) as ``metrics.md``
and ``metrics.json``; the table is also printed. See :mod:`src.metrics.suite` for the metric definitions.
CSIM aligns prediction and ground truth on landmarks detected on the ground-truth frame
(:func:`gt_landmarks_fn`); frames where no face is found are left out of CSIM and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hydra
import numpy as np
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from src.evaluation.compare import compare_sweep, format_comparison
from src.metrics import evaluate_folders, format_table, write_table
from src.models.loading import load_avatar, split_loader
from src.models.scoring import score_split
from src.preprocess.landmarks import (
    MediapipeMesh,
    make_landmarks68,
    mediapipe_to_ibug68,
    resolve_landmarks68,
)
from src.utils.confdir import CONFIG_DIR
from src.utils.task import task_wrapper


def gt_landmarks_fn(name: str = "auto") -> Callable[[np.ndarray], np.ndarray | None]:
    """68 iBUG landmarks of the face in a ground-truth frame, with the project's landmark backend.

    mediapipe FaceMesh finds the face (its box guides dlib/FAN); the chosen 68-point backend
    (``auto``: FAN if its weights exist, else dlib, else mediapipe) gives the points, and FaceMesh's
    mapped points stand in when that backend finds none (dlib's HOG misses small or turned faces).

    Args:
        name: preprocess-style backend name: auto | face_alignment | dlib | mediapipe.

    Returns:
        image (H,W,3) uint8 RGB -> (68,2) float32 pixels (project convention), or None (no face).
    """
    mesh = MediapipeMesh(static_image_mode=True, max_faces=1)
    backend = make_landmarks68(resolve_landmarks68(name))

    def detect(image: np.ndarray) -> np.ndarray | None:
        faces = mesh(image)
        hint = None
        if faces:
            hint = np.concatenate([faces[0].min(0), faces[0].max(0)]).astype(np.float64)
        lm = backend(image, hint) if backend is not None else None
        if lm is None and faces:
            lm = mediapipe_to_ibug68(faces[0])
        return lm

    return detect


def _landmarks_fn(cfg: DictConfig) -> Callable[[np.ndarray], np.ndarray | None] | None:
    return gt_landmarks_fn(cfg.get("landmarks68", "auto")) if cfg.metrics.get("csim", True) else None


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the folders named in ``cfg`` and write the table; returns the results dict."""
    if cfg.get("sweep_dir"):
        return run_sweep(cfg)
    pred_dir, gt_dir, mask_dir = cfg.get("pred_dir"), cfg.get("gt_dir"), cfg.get("mask_dir")
    metrics_cfg = OmegaConf.to_container(cfg.metrics, resolve=True)
    if cfg.get("ckpt_path"):
        results = score_checkpoint(cfg, metrics_cfg)
    elif not pred_dir or not gt_dir:
        raise ValueError(
            "give pred_dir=... and gt_dir=... (folders of frames), or ckpt_path=... (a trained avatar)"
        )
    else:
        results = evaluate_folders(
            to_absolute_path(str(pred_dir)),
            to_absolute_path(str(gt_dir)),
            to_absolute_path(str(mask_dir)) if mask_dir else None,
            metrics_cfg=metrics_cfg,
            batch_size=int(cfg.get("batch_size", 8)),
            device=cfg.get("device", "cpu"),
            landmarks_fn=_landmarks_fn(cfg),
        )
    md_path, json_path = write_table(results, to_absolute_path(cfg.out_dir))
    print(format_table(results))
    print(f"written: {md_path} {json_path}")
    return results


def score_checkpoint(cfg: DictConfig, metrics_cfg: dict[str, Any]) -> dict[str, Any]:
    """Score ``cfg.ckpt_path`` on ``cfg.split`` as its test loop does; frames go to ``out_dir`` as PNGs."""
    model, dm = load_avatar(
        to_absolute_path(cfg.ckpt_path), cfg.get("data_overrides"), map_location=cfg.get("device", "cpu")
    )
    batches = split_loader(dm, cfg.split, int(cfg.get("batch_size", 8)))
    return score_split(model, batches, cfg.split, metrics_cfg, out_dir=to_absolute_path(cfg.out_dir))


def run_sweep(cfg: DictConfig) -> dict[str, Any]:
    """Score every run of the multirun folder ``cfg.sweep_dir`` and write ``comparison.md/json``."""
    rows = compare_sweep(
        to_absolute_path(cfg.sweep_dir), to_absolute_path(cfg.out_dir),
        OmegaConf.to_container(cfg.metrics, resolve=True), cfg.split, cfg.get("checkpoint", "last.ckpt"),
        int(cfg.get("batch_size", 8)), cfg.get("device", "cpu"),
    )  # fmt: skip
    print(format_comparison(rows))
    print(f"written: {to_absolute_path(cfg.out_dir)}/comparison.md")
    return {"runs": rows}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
@task_wrapper
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry point (see the module docstring)."""
    return run(cfg)


if __name__ == "__main__":
    main()
