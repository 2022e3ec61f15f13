"""Upload checks by decoding (never by extension), contact sheets and zips of result folders."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
from PIL import Image

from src.utils.io import atomic_write

# container formats (as FFmpeg names them) accepted for uploads: mp4/mov and webm/mkv
ACCEPTED_FORMATS = {"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm"}


class UploadError(ValueError):
    """An upload is refused; the message names the problem and the fix."""


def check_video(path: Path, max_seconds: float) -> dict[str, Any]:
    """Open ``path`` with FFmpeg (PyAV) and decode its first frame.

    Args:
        path: the saved upload.
        max_seconds: longer videos are refused.

    Returns:
        ``{"format", "ext", "codec", "width", "height", "fps", "seconds", "frames"}``.

    Raises:
        UploadError: not a video FFmpeg can decode, an unaccepted container, no video stream, no frame
            decodes, or too long.
    """
    fix = "upload an mp4, mov or webm video recorded by a phone or webcam"
    try:
        with av.open(str(path)) as container:
            formats = set(container.format.name.split(","))
            if not formats & ACCEPTED_FORMATS:
                raise UploadError(f"{container.format.long_name} files are not accepted; {fix}")
            if not container.streams.video:
                raise UploadError(f"the file has no video stream; {fix}")
            stream = container.streams.video[0]
            frame = next(container.decode(stream), None)
            if frame is None:
                raise UploadError(f"no frame of the video decodes; {fix}")
            seconds = float(container.duration / av.time_base) if container.duration else None
            fps = float(stream.average_rate) if stream.average_rate else None
            info = {
                "format": container.format.name,
                "ext": "webm" if formats & {"webm", "matroska"} else "mp4",
                "codec": stream.codec_context.name,
                "width": frame.width,
                "height": frame.height,
                "fps": round(fps, 3) if fps else None,
                "seconds": round(seconds, 2) if seconds else None,
                "frames": stream.frames or None,
            }
    except UploadError:
        raise
    except (av.FFmpegError, StopIteration, OSError, ValueError) as e:
        raise UploadError(f"the file is not a readable video ({type(e).__name__}); {fix}") from e
    if info["seconds"] and info["seconds"] > max_seconds:
        raise UploadError(
            f"the video is {info['seconds']:.0f} s long, the limit is {max_seconds:.0f} s; "
            "trim it (10-60 s is ideal)"
        )
    return info


def contact_sheet(frames_dir: Path, out: Path, n: int = 16, thumb: int = 128) -> Path | None:
    """A grid of ``n`` evenly spaced frames of ``frames_dir/*.png`` written to ``out`` (PNG), or None."""
    files = sorted(frames_dir.glob("*.png"))
    if not files:
        return None
    step = max(1, len(files) / n)
    pick = [files[min(len(files) - 1, int(i * step))] for i in range(min(n, len(files)))]
    cols = min(len(pick), 4)
    rows = math.ceil(len(pick) / cols)
    sheet = Image.new("RGB", (cols * thumb, rows * thumb), (32, 32, 32))
    for i, f in enumerate(pick):
        with Image.open(f) as im:
            im = im.convert("RGB").resize((thumb, thumb))
            sheet.paste(im, ((i % cols) * thumb, (i // cols) * thumb))
    return atomic_write(out, lambda p: sheet.save(p, format="PNG"))


def zip_tree(out: Path, base: Path, members: list[str], skip: Callable[[Path], bool] | None = None) -> Path:
    """Zip ``members`` (files or folders relative to ``base``; symlinks skipped) into ``out``, atomically.

    ``skip(path relative to base)`` leaves files out (e.g. run configs and logs with server paths).
    """

    def _write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for m in members:
                root = base / m
                files = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
                for f in files:
                    rel = f.relative_to(base)
                    if f.is_file() and not f.is_symlink() and not (skip and skip(rel)):
                        zf.write(f, rel.as_posix())

    return atomic_write(out, _write)
