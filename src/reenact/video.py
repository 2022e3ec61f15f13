"""MP4 (H.264, yuv420p) and PNG-frame output, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from src.utils.io import to_uint8 as _to_uint8
from src.utils.io import write_png


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) floats in [0,1] -> (B,H,W,3) uint8."""
    return _to_uint8(images.permute(0, 2, 3, 1))


def pad_even(frame: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 padded by repeating the last row/column to even H and W (yuv420p halves chroma)."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if (h % 2 or w % 2) else frame


class VideoWriter:
    """Stream frames into an MP4 (libx264, yuv420p) via imageio-ffmpeg; the file appears only when complete.

    Frames go to a temporary file beside ``path`` that replaces ``path`` on a clean exit (``os.replace``);
    on an error it is deleted. Odd frame sizes are padded by one edge pixel to even sizes.

    Args:
        path: the .mp4 to write.
        fps: frames per second.
        crf: x264 constant rate factor (lower is better quality; 18 is visually lossless).

    Example::

        with VideoWriter("out.mp4", fps=25) as video:
            video.append(frame)  # (H,W,3) uint8
    """

    def __init__(self, path: str | os.PathLike, fps: float, crf: int = 18) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        if self.fps <= 0:
            raise ValueError(f"fps={fps} must be positive; set fps in the config (e.g. 25)")
        self.crf = int(crf)
        self.n_frames = 0
        self._gen = None
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
        import imageio_ffmpeg

        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"VideoWriter expects (H,W,3) uint8 frames, got {frame.dtype} {frame.shape}")
        frame = pad_even(frame)
        size = (frame.shape[1], frame.shape[0])
        if self._gen is None:
            self._size = size
            self._gen = imageio_ffmpeg.write_frames(
                str(self._tmp), size, fps=self.fps, codec="libx264", pix_fmt_out="yuv420p",
                macro_block_size=1, ffmpeg_log_level="error", output_params=["-crf", str(self.crf)],
            )  # fmt: skip
            self._gen.send(None)
        elif size != self._size:
            raise ValueError(
                f"frame size {size} differs from the first frame's {self._size}; render one size"
            )
        self._gen.send(np.ascontiguousarray(frame).tobytes())
        self.n_frames += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._gen is not None:
                self._gen.close()
            if exc_type is None:
                if self.n_frames == 0:
                    raise ValueError(f"no frames were written to {self.path}; the sequence is empty")
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, crf: int = 18) -> Path:
    """Write (N,H,W,3) uint8 frames as an MP4 (see :class:`VideoWriter`); returns the path."""
    with VideoWriter(path, fps, crf) as video:
        for frame in frames:
            video.append(frame)
    return Path(path)


def write_frames(folder: str | os.PathLike, frames: np.ndarray, start: int = 0) -> list[Path]:
    """Write (N,H,W,3) uint8 frames as ``folder/000000.png``... (numbered from ``start``), atomically."""
    return [write_png(Path(folder) / f"{start + i:06d}.png", f) for i, f in enumerate(frames)]
