"""Optional per-subject streams written by video preprocessing, and what they mean for losses and metrics.

``valid.png``
    (H,W) uint8, 255 where the fixed square crop lies inside the video frame, 0 where it was padded (a
    landscape clip with the face near an edge). Padded pixels are not the person's video: they are kept
    out of every loss and metric. One mask for the whole sequence (the crop is fixed).
``background.png`` / ``background_coverage.png`` / ``background_motion.npy``
    the background plate at the crop resolution (RGB uint8) in the first frame's coordinates, estimated
    from the pixels outside the person across frames; the fraction of frames in which each pixel was seen
    (uint8, 255 = every frame; 0 = never seen or padded: inpainted); (N,2,3) float32 affine maps from
    plate pixels to each frame's pixels (the small motion of a hand-held or shelf camera). Absent when
    the camera moves too much (``meta["absent"]["background"]`` says why).
``occlusion/000000.png``
    (H,W) uint8 per frame, 255 where something (a hand, an object) covers the face; meta.json
    ``occlusion.frames`` lists the frames where it was found.

Dataset items (src/datamodules/dataset.py) carry ``valid`` (1,H,W) float (all ones when absent),
``occlusion`` (1,H,W) float (all zeros when absent), ``occluded`` () float (1 for a frame listed in
meta.json ``occlusion.frames``) and, when the subject has a plate, ``background`` (3,H,W) float (the
plate as that frame sees it). :func:`pixel_weight` and :func:`landmark_visible`
turn a batch into the weights a loss or metric multiplies with; :func:`read_landmark_visibility` gives
the same per-landmark weights for a whole subject (for sequence fits such as tracking).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from src.core.layout import LayoutError, SubjectLayout
from src.utils.io import read_png


class BackgroundUnavailableError(LayoutError):
    """A background plate was required but the subject has none; the message gives the reason."""


def read_valid(layout: SubjectLayout, meta: dict | None = None) -> np.ndarray | None:
    """(H,W) bool crop-validity mask (True inside the video frame), or None when the subject has none."""
    meta = layout.read_meta() if meta is None else meta
    if not meta.get("available", {}).get("valid") or not layout.valid_path.exists():
        return None
    return read_png(layout.valid_path) >= 128


def read_background(
    layout: SubjectLayout, index: int | None = None, meta: dict | None = None, required: bool = False
) -> torch.Tensor | None:
    """The background plate, as a frame sees it.

    Args:
        layout: the subject.
        index: frame number: the plate moved by that frame's camera motion (``background_motion.npy``);
            None: the plate in the first frame's coordinates.
        meta: its meta dict (read when None).
        required: raise instead of returning None.

    Returns:
        (3,H,W) float in [0,1], or None when the subject has no usable plate (a camera that moves too
        much, ``preprocess.background=none``, synthetic subject).

    Raises:
        BackgroundUnavailableError: ``required`` and no plate; the message says why and what to do.
    """
    meta = layout.read_meta() if meta is None else meta
    if meta.get("available", {}).get("background") and layout.background_path.exists():
        img = read_png(layout.background_path)
        if index is not None and layout.background_motion_path.exists():
            A = np.load(layout.background_motion_path, mmap_mode="r")[index].astype(np.float64)
            img = cv2.warpAffine(
                img, A, img.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
        return torch.from_numpy(img).permute(2, 0, 1).float() / 255
    if required:
        why = meta.get("absent", {}).get("background", "it was never estimated")
        raise BackgroundUnavailableError(
            f"{layout.root} has no background plate ({why}); use the learned background, or film with a "
            "fixed camera and preprocess with preprocess.background=plate"
        )
    return None


def warp_plate(plate: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """The plate as frames see it: torch's (differentiable, batched) version of what :func:`read_background`
    does with ``cv2.warpAffine(plate, A, ..., INTER_LINEAR, BORDER_REPLICATE)``.

    Args:
        plate: (3,H,W) or (1,3,H,W) background in the first frame's pixels.
        motion: (B,2,3) affine maps from first-frame pixels (pixel centres at integers, as OpenCV) to each
            frame's pixels.

    Returns:
        (B,3,H,W) plates; a pixel that maps outside the plate takes the nearest border value.
    """
    plate = plate[None] if plate.dim() == 3 else plate
    B, (H, W) = motion.shape[0], plate.shape[-2:]
    A = torch.cat([motion.to(plate), motion.new_tensor([0.0, 0.0, 1.0]).to(plate).expand(B, 1, 3)], 1)
    inv = torch.linalg.inv(A)[:, :2]  # frame pixel -> plate pixel
    ys, xs = torch.meshgrid(
        torch.arange(H, device=plate.device, dtype=plate.dtype),
        torch.arange(W, device=plate.device, dtype=plate.dtype),
        indexing="ij",
    )
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, -1, 3)  # (1,HW,3)
    src = pts @ inv.transpose(1, 2)  # (B,HW,2) plate pixels
    grid = torch.stack([2 * src[..., 0] / max(W - 1, 1) - 1, 2 * src[..., 1] / max(H - 1, 1) - 1], -1)
    return F.grid_sample(
        plate.expand(B, -1, -1, -1), grid.view(B, H, W, 2), mode="bilinear", padding_mode="border",
        align_corners=True,
    )  # fmt: skip


def read_background_motion(layout: SubjectLayout, meta: dict | None = None) -> torch.Tensor | None:
    """(N,2,3) float32 camera motion of every frame (see :func:`warp_plate`), or None without a plate (or
    without motion: a plate estimated for a still camera has identity maps)."""
    meta = layout.read_meta() if meta is None else meta
    if not meta.get("available", {}).get("background") or not layout.background_motion_path.exists():
        return None
    return torch.from_numpy(np.load(layout.background_motion_path).astype(np.float32))


def read_landmark_visibility(
    layout: SubjectLayout, meta: dict | None = None, key: str = "landmarks68"
) -> np.ndarray | None:
    """Which landmarks of every frame lie on visible face pixels (for fits over the whole sequence,
    e.g. tracking): 0 on occluded or padded pixels, else 1.

    Args:
        layout: the subject.
        meta: its meta dict (read when None).
        key: "landmarks68" or "landmarks478".

    Returns:
        (N,L) float32, or None when the subject has no such landmarks.
    """
    meta = layout.read_meta() if meta is None else meta
    path = layout.root / f"{key}.npy"
    if not path.exists():
        return None
    pts = np.load(path)
    n, h, w = len(pts), int(meta["height"]), int(meta["width"])
    valid = read_valid(layout, meta)
    ok = np.ones((h, w), bool) if valid is None else valid
    x = np.clip(np.floor(pts[..., 0]).astype(int), 0, w - 1)
    y = np.clip(np.floor(pts[..., 1]).astype(int), 0, h - 1)
    vis = ok[y, x].astype(np.float32)
    for i in (meta.get("occlusion") or {}).get("frames", []):
        if i < n:
            vis[i] *= read_png(layout.frame_path("occlusion", i))[y[i], x[i]] < 128
    return vis


def pixel_weight(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Per-pixel weight for photometric losses: valid crop pixels that no occluder covers.

    Args:
        batch: a batch of dataset items (``valid`` and ``occlusion``, each (B,1,H,W)).

    Returns:
        (B,1,H,W) float in [0,1], or None when the batch carries neither key.
    """
    w = batch.get("valid")
    occ = batch.get("occlusion")
    if occ is not None:
        w = (1 - occ) if w is None else w * (1 - occ)
    return w


def landmark_visible(batch: dict[str, torch.Tensor], key: str = "landmarks68") -> torch.Tensor | None:
    """Per-landmark weight: 0 for landmarks on occluded or padded pixels, else 1.

    Args:
        batch: dataset items with ``key`` (B,L,2) pixels (corner origin) and ``valid``/``occlusion``.
        key: which landmarks.

    Returns:
        (B,L) float, or None when the batch has no such landmarks.
    """
    pts = batch.get(key)
    if pts is None:
        return None
    w = pixel_weight(batch)
    if w is None:
        return torch.ones(pts.shape[:2], dtype=pts.dtype, device=pts.device)
    _, _, h, wd = w.shape
    x = pts[..., 0].floor().long().clamp(0, wd - 1)
    y = pts[..., 1].floor().long().clamp(0, h - 1)
    b = torch.arange(pts.shape[0], device=pts.device)[:, None].expand_as(x)
    return (w[b, 0, y, x] > 0.5).to(pts.dtype)
