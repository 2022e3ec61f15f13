"""Small test videos: a real face (scikit-image's public-domain astronaut photo) moved through a few
rotations and scalings (optionally over a moving textured background), and a subject layout's frames
written back to an MP4 (for the tests and
bench/bench_tracking.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from src.core.layout import SubjectLayout
from src.utils.video import write_video

ASTRONAUT_FACE = (222.0, 125.0)  # face centre in skimage.data.astronaut() (512x512)


def astronaut_frames(n: int = 8, size: int = 256, scale: float = 1.0, max_deg: float = 6.0) -> np.ndarray:
    """Crops of the astronaut photo with small in-plane rotations, scalings and shifts.

    Args:
        n: number of frames.
        size: frame side in pixels.
        scale: zoom of the photo (1.0: the face is about 110 px wide).
        max_deg: largest rotation in degrees.

    Returns:
        (n,size,size,3) uint8 RGB.
    """
    from skimage.data import astronaut

    img = astronaut()
    out = []
    for k in range(n):
        th = max_deg * np.sin(2 * np.pi * k / max(n, 1))
        s = scale * (1 + 0.08 * np.cos(2 * np.pi * k / max(n, 1)))
        M = cv2.getRotationMatrix2D(ASTRONAUT_FACE, th, s)
        M[:, 2] += np.array([size / 2, 0.45 * size]) - np.array(ASTRONAUT_FACE) + [(3 * k) % 5, (2 * k) % 3]
        out.append(
            cv2.warpAffine(img, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        )
    return np.stack(out)


def astronaut_over_moving_background(
    n: int = 8, size: int = 256, shift: tuple[float, float] = (2.0, 0.0), seed: int = 0
) -> np.ndarray:
    """:func:`astronaut_frames` with the background replaced by a texture that moves ``shift`` pixels
    per frame (a camera that moves while the person stays in frame), for the background-plate tests.

    Args:
        n: number of frames.
        size: frame side in pixels.
        shift: background motion per frame (x, y) in pixels.
        seed: texture seed.

    Returns:
        (n,size,size,3) uint8 RGB.
    """
    from src.preprocess.segment import SelfieSegmenter

    frames = astronaut_frames(n, size)
    rng = np.random.default_rng(seed)
    pad = int(np.ceil(max(abs(shift[0]), abs(shift[1])) * n)) + 8
    side = size + 2 * pad
    cells = rng.integers(40, 215, (side // 8, side // 8, 3)).astype(np.uint8)
    big = cv2.resize(cells, (side, side), interpolation=cv2.INTER_CUBIC)
    seg = SelfieSegmenter()
    try:
        out = []
        for k, f in enumerate(frames):
            M = np.float32([[1, 0, shift[0] * k - pad], [0, 1, shift[1] * k - pad]])
            bg = cv2.warpAffine(big, M, (size, size), flags=cv2.INTER_LINEAR)
            a = seg(f).astype(np.float32)[..., None] / 255
            out.append(np.round(a * f + (1 - a) * bg).astype(np.uint8))
    finally:
        seg.close()
    return np.stack(out)


def write_astronaut_clip(
    path: str | Path, n: int = 8, size: int = 256, scale: float = 1.0, fps: float = 25.0
):
    """Write :func:`astronaut_frames` to an MP4 and return its path."""
    return write_video(path, astronaut_frames(n, size, scale), fps)


def write_subject_video(root: str | Path, path: str | Path, fps: float | None = None) -> Path:
    """Write a subject layout's frames (e.g. the synthetic subject) as an MP4 (H.264, CRF 18)."""
    layout = SubjectLayout(Path(root))
    meta = layout.read_meta()
    frames = [layout.read_image("frames", i) for i in range(meta["n_frames"])]
    return write_video(path, frames, fps or meta.get("fps") or 25.0)
