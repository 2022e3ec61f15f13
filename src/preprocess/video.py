"""Video decoding with PyAV: any container/codec FFmpeg reads (mp4, mov, webm, ...), any size and rate.

Frames are selected by time (``max_fps``), window (``start_s``, ``max_seconds``) and count
(``max_frames``); phone videos with a display rotation are turned upright. Damaged files raise
:class:`~src.preprocess.errors.VideoReadError` with the fix.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from src.preprocess.errors import VideoReadError

log = logging.getLogger(__name__)


@dataclass
class VideoInfo:
    """What the container announces about its first video stream (sizes after display rotation)."""

    path: str
    width: int
    height: int
    fps: float
    n_frames: int  # announced frame count, 0 when the container does not say
    duration_s: float
    codec: str
    rotation: int  # display rotation, degrees counter-clockwise

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class DecodedFrame:
    """One selected frame: ``index`` among the selected frames, ``raw_index`` in the stream, time (s)."""

    index: int
    raw_index: int
    time: float
    image: np.ndarray  # (H,W,3) uint8 RGB, upright


def _open(path: str | os.PathLike):
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"video {path} does not exist; check data.path / video=")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise VideoReadError(
            f"cannot read {path} as a video ({e}); it is not a video file or it is damaged/truncated: "
            "re-export or re-download it (mp4, mov and webm work)"
        ) from e
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path} has no video stream; pass a video file (mp4, mov, webm)")
    return container


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the container header.

    Raises:
        VideoReadError: missing file, not a video, no video stream.
    """
    with _open(path) as container:
        s = container.streams.video[0]
        rate = s.average_rate or s.guessed_rate or 0
        fps = float(rate) if rate else 0.0
        dur = float(s.duration * s.time_base) if s.duration else (container.duration or 0) / 1e6
        rotation = 0
        w, h = s.codec_context.width, s.codec_context.height
        try:
            first = next(container.decode(s))
            rotation = int(round(getattr(first, "rotation", 0) or 0))
        except (StopIteration, av.error.FFmpegError) as e:
            raise VideoReadError(
                f"{path}: no frame of the video decodes ({e or 'empty stream'}); the file is damaged or "
                "truncated: re-export or re-download it"
            ) from None
        if rotation % 180:
            w, h = h, w
        return VideoInfo(
            str(path), int(w), int(h), fps, int(s.frames or 0), dur, s.codec_context.name, rotation
        )


def video_fingerprint(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Short content hash of a video file (size + first and last MiB), for cache validation."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha1(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(chunk, size - chunk))
            h.update(f.read(chunk))
    return h.hexdigest()[:16]


def iter_frames(
    path: str | os.PathLike,
    max_fps: float | None = None,
    max_frames: int | None = None,
    start_s: float = 0.0,
    max_seconds: float | None = None,
    allow_truncated: bool = False,
) -> Iterator[DecodedFrame]:
    """Decode the selected frames in order.

    Args:
        path: video file.
        max_fps: keep at most this many frames per second (by timestamp); None keeps every frame.
        max_frames: stop after this many selected frames.
        start_s: skip frames before this time (seconds).
        max_seconds: stop at ``start_s + max_seconds``.
        allow_truncated: on a decoding error or a stream that ends early, keep the frames that decoded
            (with a warning) instead of raising.

    A file is truncated when decoding fails, when the stream ends before the last packet its index lists,
    or when the decoded frames stop short of the stream's last packet. A container that announces a few
    more frames than decode (pre-roll packets before time 0 that an edit list drops) is not truncated.

    Yields:
        :class:`DecodedFrame` with the upright RGB image (H,W,3) uint8.

    Raises:
        VideoReadError: unreadable file; a truncated file (see above), unless ``allow_truncated``.
    """
    container = _open(path)
    try:
        s = container.streams.video[0]
        announced = int(s.frames or 0)
        tb = float(s.time_base) if s.time_base else 0.0
        rate = float(s.average_rate or s.guessed_rate or 25)
        next_t = start_s
        raw = sel = packets = 0
        last_packet = last_frame = None  # largest pts of the demuxed packets / of the decoded frames
        stopped_early = False
        error = None
        for packet in container.demux(s):
            if packet.size and packet.pts is not None:
                packets += 1
                last_packet = packet.pts if last_packet is None else max(last_packet, packet.pts)
            try:
                frames = packet.decode()
            except av.error.FFmpegError as e:
                error = e
                break
            for f in frames:
                if f.pts is not None:
                    last_frame = f.pts if last_frame is None else max(last_frame, f.pts)
                t = float(f.pts * tb) if f.pts is not None and tb else raw / rate
                raw += 1
                if t < start_s - 1e-6:
                    continue
                if max_seconds is not None and t > start_s + max_seconds + 1e-6:
                    stopped_early = True
                    break
                if max_fps and t < next_t - 0.5 / rate:
                    continue
                if max_fps:
                    next_t += 1.0 / max_fps
                img = f.to_ndarray(format="rgb24")
                rot = int(round(getattr(f, "rotation", 0) or 0)) // 90 % 4
                if rot:
                    img = np.ascontiguousarray(np.rot90(img, k=rot))
                yield DecodedFrame(sel, raw - 1, t, img)
                sel += 1
                if max_frames is not None and sel >= max_frames:
                    stopped_early = True
                    break
            if stopped_early:
                break
    finally:
        container.close()
    if raw == 0:
        raise VideoReadError(
            f"{path}: no frame of the video decodes ({error or 'empty stream'}); the file is damaged or "
            "truncated: re-export or re-download it"
        )
    why = None
    if error is not None:
        why = f"decoding failed after {raw} frames ({error})"
    elif not stopped_early and announced > 0 and packets < announced - 1:
        why = f"the stream ends after {packets} of the {announced} packets its index lists"
    elif not stopped_early and last_packet is not None and last_frame is not None and tb:
        gap = float((last_packet - last_frame) * tb)
        if gap > 1.5 / rate:
            why = f"decoding stops {gap:.2f} s before the stream's last packet ({raw} frames decoded)"
    if why is not None:
        msg = f"{path} looks truncated or damaged: {why}"
        if not allow_truncated:
            raise VideoReadError(
                f"{msg}; re-export or re-download it, or set preprocess.allow_truncated=true to use the "
                "frames that decode"
            )
        log.warning("%s; using the %d frames that decoded (allow_truncated=true)", msg, sel)
