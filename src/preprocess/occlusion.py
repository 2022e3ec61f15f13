"""Occluders in front of the face (a hand, a cup, a phone), found per frame and written as pixel masks.

FaceMesh places its 478 points even under a hand, and a hand is skin-coloured, so neither landmark
confidence nor skin colour separates it. What does: the face's own appearance. Every frame is warped onto
one canonical face (a piecewise-affine map on the Delaunay triangles of the median FaceMesh shape), the
per-pixel median over frames is the person's face, and the median absolute deviation (MAD) over frames
is how much each pixel varies anyway (talking, blinking, lighting). A pixel is occluded in a frame when
it differs from the median by more than ``k`` robust deviations and by at least ``min_diff`` of 255;
regions smaller than ``min_area`` of the face are ignored; the eyes and lips (whose appearance changes
with expression) are not judged. The canonical mask is warped back onto the frame and filled to its
convex hull there (a skin-coloured occluder matches the cheek where it covers the cheek). Works when the
occluder covers a minority of the frames (the median must show the face).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

from src.preprocess.segment import EYES, FACE_OVAL, LIPS_OUTER

OCCLUSION_SOURCE = "facemesh_canonical_appearance (robust deviation from the per-pixel median face)"


def _raster(pts: np.ndarray, tris: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Triangle id (H,W) int32 (-1 outside) and barycentric coordinates (H,W,3) of every pixel centre."""
    tid = np.full((h, w), -1, np.int32)
    for t, tri in enumerate(tris):
        cv2.fillConvexPoly(tid, np.round((pts[tri] - 0.5) * 16).astype(np.int32), t, cv2.LINE_8, 4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    inside = tid >= 0
    a, b, c = (pts[tris[tid[inside], j]] for j in range(3))
    p = np.stack([xx[inside], yy[inside]], -1)
    v0, v1, v2 = b - a, c - a, p - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) < 1e-9, 1e-9, den)
    l1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    l2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    bary = np.zeros((h, w, 3), np.float64)
    bary[inside] = np.stack([1 - l1 - l2, l1, l2], -1)
    return tid, bary


def _map(
    tid: np.ndarray, bary: np.ndarray, tris: np.ndarray, pts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """remap() coordinates: the point with the same barycentric coordinates in ``pts``' triangles."""
    inside = tid >= 0
    xy = np.full(tid.shape + (2,), -1.0, np.float64)
    corners = pts[tris[tid[inside]]]  # (P,3,2)
    xy[inside] = np.einsum("pj,pjc->pc", bary[inside], corners)
    xy -= 0.5  # remap samples at integer pixel centres
    return xy[..., 0].astype(np.float32), xy[..., 1].astype(np.float32)


def _poly(h: int, w: int, pts: np.ndarray) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round((pts - 0.5) * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return m > 0


def detect_occlusions(
    frames: np.ndarray,
    lmk478: np.ndarray,
    k: float = 4.0,
    min_diff: float = 30.0,
    mad_floor: float = 4.0,
    min_area: float = 0.03,
    blur: float = 1.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Occluded face pixels of every frame.

    Args:
        frames: (N,H,W,3) uint8 RGB crops.
        lmk478: (N,478,2) FaceMesh points in pixels (corner origin).
        k: robust deviations (1.4826 MAD) a pixel must differ from the median face.
        min_diff: smallest absolute difference (mean over RGB, 0..255) that counts.
        mad_floor: lower bound of the per-pixel deviation (0..255; compression noise on a still face).
        min_area: smallest occluded region, fraction of the judged face area.
        blur: Gaussian sigma (pixels) applied before comparing (alignment tolerance).

    Returns:
        masks (N,H,W) uint8 255 occluded, flags (N,) bool, fraction (N,) float occluded part of the face.
    """
    n, h, w, _ = frames.shape
    canon = np.median(lmk478[:, :468].astype(np.float64), 0)
    tris = Delaunay(canon).simplices
    tid, bary = _raster(canon, tris, h, w)
    face = _poly(h, w, canon[FACE_OVAL]) & (tid >= 0)
    skip = _poly(h, w, canon[LIPS_OUTER]) | _poly(h, w, canon[EYES[0]]) | _poly(h, w, canon[EYES[1]])
    skip = cv2.dilate(skip.astype(np.uint8), np.ones((2 * max(1, h // 64) + 1,) * 2, np.uint8)) > 0
    judged = face & ~skip
    tex = np.empty((n, h, w, 3), np.float32)
    for i in range(n):
        mx, my = _map(tid, bary, tris, lmk478[i, :468].astype(np.float64))
        t = cv2.remap(frames[i], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        tex[i] = cv2.GaussianBlur(t, (0, 0), blur)
    med = np.median(tex[:, judged], 0)  # (P,3)
    diff = tex[:, judged] - med[None]
    diff -= np.median(diff, 1, keepdims=True)  # per-frame exposure / white-balance change
    dev = np.abs(diff).mean(-1)  # (N,P)
    mad = np.maximum(1.4826 * np.median(dev, 0), mad_floor)
    hit = (dev > k * mad[None]) & (dev > min_diff)
    area = judged.sum()
    masks = np.zeros((n, h, w), np.uint8)
    flags = np.zeros(n, bool)
    frac = np.zeros(n, np.float64)
    open_k = np.ones((3, 3), np.uint8)
    for i in range(n):
        if hit[i].sum() < min_area * area:
            continue
        cm = np.zeros((h, w), np.uint8)
        cm[judged] = hit[i]
        cm = cv2.morphologyEx(cm, cv2.MORPH_OPEN, open_k)
        cnt, lab, st, _ = cv2.connectedComponentsWithStats(cm, connectivity=8)
        big = [j for j in range(1, cnt) if st[j, cv2.CC_STAT_AREA] >= min_area * area]
        if not big:
            continue
        cm = np.isin(lab, big).astype(np.uint8)
        frac[i] = float(cm[face].mean())
        flags[i] = True
        ftid, fbary = _raster(lmk478[i, :468].astype(np.float64), tris, h, w)
        mx, my = _map(ftid, fbary, tris, canon)
        back = cv2.remap(cm, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
        hull = np.zeros((h, w), np.uint8)
        ys, xs = np.nonzero(back)  # an occluder is compact: its hull covers the parts that look like cheek
        if len(xs):
            cv2.fillConvexPoly(hull, cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32)), 255)
        masks[i] = cv2.dilate(hull, np.ones((5, 5), np.uint8))
    return masks, flags, frac
