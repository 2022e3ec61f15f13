"""A background plate from the pixels outside the person, with the camera's small motion compensated.

A phone on a shelf or in a hand is rarely perfectly still: on ``single_face.mp4`` the wall behind the
person moves by up to ~10 px (at 256 px) over 2.4 s. So the plate is estimated in the coordinates of the
first frame:

1. **motion**: corners (Shi-Tomasi) of the first frame, in pixels that are background in every frame and
   away from the person (shadows and hair strands move with the person), are tracked into every frame
   (pyramidal Lucas-Kanade seeded by extrapolating the motion, forward-backward check); a RANSAC
   similarity per frame maps the first frame onto it (``background_motion.npy``, (N,2,3)).
2. **plate**: every frame is warped back onto the first; per pixel, the median over the frames in which
   it is background (outside the person mask dilated by a margin, inside the video frame); pixels never
   seen are inpainted (OpenCV Telea); ``background_coverage.png`` stores the fraction of frames that saw
   each pixel. The last ``holdout`` frames (the held-out test frames) are not used.
3. **check**: after the warp, background pixels must match the plate (median absolute difference at most
   ``max_residual`` of 255) and the motion must stay below ``max_motion_frac`` of the crop side. Otherwise
   (a panning or walking camera, parallax a similarity cannot explain) no plate is written: meta.json
   marks ``background`` unavailable with the reason and training falls back to the learned background.

A frame's plate is the plate warped by its motion (:func:`src.core.streams.read_background`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from src.core.layout import SubjectLayout
from src.utils.io import write_npy, write_png

log = logging.getLogger(__name__)

MAX_PLATE_FRAMES = 120  # at most this many frames (evenly spaced) enter the median: bounds memory


@dataclass
class PlateResult:
    """Outcome of :func:`estimate_plate`.

    Attributes:
        plate: (H,W,3) uint8 background plate (inpainted where never seen).
        coverage: (H,W) float fraction of the used frames in which each pixel was background.
        motion: (N,2,3) float32 affine maps from the plate's (first frame's) pixels to each frame's.
        residual: median over frames of the median absolute background difference to the aligned plate.
        moving: the camera moves (no usable plate).
        reason: why the plate is unusable ("" when usable).
        stats: numbers recorded in meta.json.
    """

    plate: np.ndarray
    coverage: np.ndarray
    motion: np.ndarray
    residual: float
    moving: bool
    reason: str = ""
    stats: dict = field(default_factory=dict)


def background_pixels(masks: np.ndarray, dilate_px: int, threshold: int = 26) -> np.ndarray:
    """Pixels safely outside the person: alpha below ``threshold`` after dilating the person by ``dilate_px``.

    Args:
        masks: (N,H,W) uint8 person alpha.
        dilate_px: margin around the person (hair strands, segmentation edges, motion blur).
        threshold: alpha (0..255) above which a pixel belongs to the person.

    Returns:
        (N,H,W) bool.
    """
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
    return np.stack([cv2.dilate((m >= threshold).astype(np.uint8), k) == 0 for m in masks])


def background_motion(
    gray: np.ndarray, stable: np.ndarray, min_points: int = 8, max_points: int = 300
) -> np.ndarray | None:
    """Similarity of every frame relative to the first, from background corners tracked directly from the
    first frame (no accumulated frame-to-frame error).

    Args:
        gray: (N,H,W) uint8 frames.
        stable: (H,W) bool pixels that are background in every frame, away from the person.
        min_points: fewer tracked corners than this makes the motion unmeasurable.
        max_points: corners detected in the first frame.

    Returns:
        (N,2,3) float32 affine maps from first-frame pixels to each frame's pixels (the first: identity),
        or None when the background has too few trackable corners.
    """
    n, h, _ = gray.shape
    eye = np.eye(2, 3, dtype=np.float64)
    motion = np.repeat(eye[None], n, 0)
    mask = stable.astype(np.uint8) * 255
    pts = cv2.goodFeaturesToTrack(gray[0], max_points, 0.01, max(3, h // 40), mask=mask)
    if pts is None or len(pts) < min_points:
        return None
    lk = {"winSize": (21, 21), "maxLevel": 3, "flags": cv2.OPTFLOW_USE_INITIAL_FLOW}
    for k in range(1, n):
        pred = motion[k - 1] if k < 2 else 2 * motion[k - 1] - motion[k - 2]  # constant velocity
        guess = cv2.transform(pts, pred).astype(np.float32)
        nxt, ok, _ = cv2.calcOpticalFlowPyrLK(gray[0], gray[k], pts, guess, **lk)
        back, ok2, _ = cv2.calcOpticalFlowPyrLK(gray[k], gray[0], nxt, pts.copy(), **lk)
        good = (ok[:, 0] == 1) & (ok2[:, 0] == 1) & (np.linalg.norm(back - pts, axis=-1)[:, 0] < 0.5)
        if good.sum() < min_points:
            return None
        A, inl = cv2.estimateAffinePartial2D(
            pts[good], nxt[good], method=cv2.RANSAC, ransacReprojThreshold=1.0
        )
        if A is None or inl.sum() < min_points:
            return None
        motion[k] = A
    return motion.astype(np.float32)


def motion_px(motion: np.ndarray, size: int) -> np.ndarray:
    """(N,) largest displacement of the crop's corners under each frame's motion (N,2,3), in pixels."""
    c = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    moved = np.einsum("nij,cj->nci", motion.astype(np.float64), c)
    return np.linalg.norm(moved - c[None, :, :2], axis=-1).max(1)


def estimate_plate(
    frames: np.ndarray,
    masks: np.ndarray,
    valid: np.ndarray | None = None,
    holdout: int = 0,
    dilate_frac: float = 0.03,
    max_motion_frac: float = 0.15,
    max_residual: float = 8.0,
    inpaint_radius: int = 5,
    stable_margin: int = 6,
) -> PlateResult:
    """Background plate in the first frame's coordinates, each frame's motion, and whether they are usable.

    Args:
        frames: (N,H,W,3) uint8 RGB crops.
        masks: (N,H,W) uint8 person alpha.
        valid: (H,W) bool pixels inside the video frame (None: all).
        holdout: the last frames that do not contribute to the plate (held-out test frames); at least
            the first half of the frames always does.
        dilate_frac: person-mask margin as a fraction of the crop side.
        max_motion_frac: largest tolerated camera motion, fraction of the crop side.
        max_residual: largest tolerated median absolute background difference to the plate after the
            motion is compensated (0..255).
        inpaint_radius: OpenCV inpainting radius in pixels.
        stable_margin: corners for the motion keep this many pixels from anything that was ever the person.

    Returns:
        A :class:`PlateResult`.
    """
    n, h, w, _ = frames.shape
    size = (w, h)
    bg = background_pixels(masks, max(1, round(dilate_frac * h)))
    if valid is not None:
        bg &= valid[None]
    stable = cv2.erode(bg.all(0).astype(np.uint8), np.ones((2 * stable_margin + 1,) * 2, np.uint8)) > 0
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    motion = background_motion(gray, stable)
    measured = motion is not None
    if motion is None:  # a textureless background: assume static, the residual check decides
        motion = np.repeat(np.eye(2, 3, dtype=np.float32)[None], n, 0)
    use = max(n - int(holdout), (n + 1) // 2)  # short clips: at least the first half
    sel = np.unique(np.linspace(0, use - 1, min(use, MAX_PLATE_FRAMES)).round().astype(int))
    warp = {"flags": cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, "borderMode": cv2.BORDER_CONSTANT}
    ref = np.stack([cv2.warpAffine(frames[k], motion[k], size, **warp) for k in sel]).astype(np.float32)
    ref_bg = np.stack(
        [cv2.warpAffine(bg[k].astype(np.uint8) * 255, motion[k], size, **warp) > 254 for k in sel]
    )
    count = ref_bg.sum(0)
    seen = count > 0
    plate = np.zeros((h, w, 3), np.float32)
    if seen.any():
        plate[seen] = np.nanmedian(np.where(ref_bg[:, seen][..., None], ref[:, seen], np.nan), axis=0)
    plate_u8 = np.clip(np.round(plate), 0, 255).astype(np.uint8)
    if (~seen).any():
        plate_u8 = cv2.inpaint(plate_u8, (~seen).astype(np.uint8) * 255, inpaint_radius, cv2.INPAINT_TELEA)
    resid = np.abs(ref - plate_u8.astype(np.float32)[None]).mean(-1)
    per_frame = [float(np.median(r[b])) for r, b in zip(resid, ref_bg) if b.any()]
    residual = float(np.median(per_frame)) if per_frame else 0.0
    moved = motion_px(motion, h)
    reasons = []
    if moved.max() > max_motion_frac * h:
        reasons.append(f"it moves by {moved.max():.0f} px (limit {max_motion_frac * h:.0f} px at {h} px)")
    if residual > max_residual:
        reasons.append(
            f"background pixels differ from the aligned plate by {residual:.1f}/255 (limit {max_residual})"
        )
    if reasons and not measured:
        reasons.append("its motion could not be tracked")
    reason = ("the camera is not static: " + " and ".join(reasons)) if reasons else ""
    stats = {
        "frames_used": len(sel), "first_unused_frame": int(use), "motion_measured": measured,
        "max_motion_px": round(float(moved.max()), 2),
        "residual": round(residual, 2), "max_residual": max_residual,
        "seen_fraction": round(float(seen.mean()), 4), "inpainted_px": int((~seen).sum()),
        "mean_coverage": round(float(count.mean() / len(sel)), 4),
    }  # fmt: skip
    return PlateResult(plate_u8, count / len(sel), motion, residual, bool(reasons), reason, stats)


def write_background(
    layout: SubjectLayout, n_frames: int, valid: np.ndarray | None = None, **kwargs
) -> tuple[dict, str]:
    """Estimate the plate from a subject's frames and masks; write it, its coverage and the per-frame
    motion when they are usable, else remove them.

    Args:
        layout: subject with frames/ and masks/.
        n_frames: number of frames.
        valid: (H,W) bool crop validity (None: all valid).
        **kwargs: :func:`estimate_plate` options.

    Returns:
        (the ``background`` entry for meta.json, the reason the plate is unusable or "").
    """
    frames = np.stack([layout.read_image("frames", i) for i in range(n_frames)])
    masks = np.stack([layout.read_image("masks", i) for i in range(n_frames)])
    res = estimate_plate(frames, masks, valid, **kwargs)
    for path in (layout.background_path, layout.background_coverage_path, layout.background_motion_path):
        path.unlink(missing_ok=True)
    if res.moving:
        log.warning("%s: %s; no background plate, training uses the learned background (film with a fixed "
                    "camera, or preprocess.background=none)", layout.root.name, res.reason)  # fmt: skip
    else:
        write_png(layout.background_path, res.plate)
        write_png(layout.background_coverage_path, np.round(res.coverage * 255).astype(np.uint8))
        write_npy(layout.background_motion_path, res.motion)
    return {**res.stats, "usable": not res.moving, "reason": res.reason}, res.reason
