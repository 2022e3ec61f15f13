"""The project's one MP4 writer (H.264, yuv420p, via PyAV) and the PNG-frame writer, both atomic.

Frame rates are kept exact: 29.97 is written as 30000/1001, 12.5 as 25/2 (:func:`frame_rate`), so a
re-encoded phone video keeps its timing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from src.utils.io import write_png

# NTSC-family rates a float like 29.97 stands for (ffmpeg's "ntsc" rates: N * 1000/1001)
_NTSC = tuple(Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120))


def frame_rate(fps: float | Fraction) -> Fraction:
    """An exact rational frame rate for ``fps``.

    A Fraction is kept. A float within 0.005 of an NTSC rate (23.976, 29.97, 59.94, ...) becomes that rate
    (30000/1001); any other float becomes the nearest fraction with a denominator up to 1001 (25 -> 25,
    12.5 -> 25/2).

    Raises:
        ValueError: ``fps`` is not a positive number.
    """
    if not fps or float(fps) <= 0 or not np.isfinite(float(fps)):
        raise ValueError(f"fps={fps} must be a positive number; set fps in the config (e.g. 25)")
    if isinstance(fps, Fraction):
        return fps
    for rate in _NTSC:
        if abs(float(fps) - float(rate)) < 5e-3:
            return rate
    return Fraction(float(fps)).limit_denominator(1001)


def pad_even(frame: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 padded by repeating the last row/column to even H and W (yuv420p halves chroma)."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if (h % 2 or w % 2) else frame


class VideoWriter:
    """Stream frames into an MP4 (libx264, yuv420p); the file appears only when complete.

    Frames go to a temporary file beside ``path`` that replaces ``path`` on a clean exit (``os.replace``);
    on an error it is deleted. Odd frame sizes are padded by one edge pixel to even sizes.

    Args:
        path: the .mp4 to write.
        fps: frames per second (float or Fraction; see :func:`frame_rate`).
        crf: x264 constant rate factor (lower is better quality; 18 is visually lossless).

    Example::

        with VideoWriter("out.mp4", fps=25) as video:
            video.append(frame)  # (H,W,3) uint8
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction, crf: int = 18) -> None:
        self.path = Path(path)
        self.rate = frame_rate(fps)
        self.fps = float(self.rate)
        self.crf = int(crf)
        self.n_frames = 0
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None
        self._tmp: Path | None = None

    def __enter__(self) -> VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=".mp4")
        os.close(fd)
        self._tmp = Path(tmp)
        return self

    def append(self, frame: np.ndarray) -> None:
        """Add one (H,W,3) uint8 frame (all frames must have the size of the first)."""
        if self._tmp is None:
            raise RuntimeError("use VideoWriter as a context manager: with VideoWriter(path, fps) as video")
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"VideoWriter expects (H,W,3) uint8 frames, got {frame.dtype} {frame.shape}")
        frame = pad_even(frame)
        size = (frame.shape[1], frame.shape[0])
        if self._stream is None:
            self._size = size
            self._container = av.open(str(self._tmp), "w", format="mp4")
            self._stream = self._container.add_stream("libx264", rate=self.rate)
            self._stream.width, self._stream.height = size
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf)}
        elif size != self._size:
            raise ValueError(
                f"frame size {size} differs from the first frame's {self._size}; render one size"
            )
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts, vf.time_base = self.n_frames, 1 / self.rate
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.n_frames += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._container is not None:
                if exc_type is None:
                    for packet in self._stream.encode():
                        self._container.mux(packet)
                self._container.close()
            if exc_type is None:
                if self.n_frames == 0:
                    raise ValueError(f"no frames were written to {self.path}; the sequence is empty")
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(self._tmp, 0o666 & ~umask)  # mkstemp creates 0600
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float | Fraction = 25.0,
    crf: int = 18,
) -> Path:
    """Write (N,H,W,3) uint8 frames as an MP4 (see :class:`VideoWriter`); returns the path."""
    with VideoWriter(path, fps, crf) as video:
        for frame in frames:
            video.append(frame)
    return Path(path)


def write_frames(folder: str | os.PathLike, frames: np.ndarray, start: int = 0) -> list[Path]:
    """Write (N,H,W,3) uint8 frames as ``folder/000000.png``... (numbered from ``start``), atomically."""
    return [write_png(Path(folder) / f"{start + i:06d}.png", f) for i, f in enumerate(frames)]
