"""Errors of video preprocessing: each names the problem, the frames concerned and the fix."""

from __future__ import annotations


class PreprocessError(ValueError):
    """A video cannot be turned into a subject layout; the message says why and what to do."""


class VideoReadError(PreprocessError):
    """The file is missing, not a video, damaged or truncated."""


class NoFaceError(PreprocessError):
    """No face was found (in any frame, or in too many frames)."""


class MultipleFacesError(PreprocessError):
    """More than one face in the frames: the pipeline builds one person's avatar."""


class FaceTooSmallError(PreprocessError):
    """The face is smaller than ``min_face_size`` pixels in the source frames."""


class TooFewFramesError(PreprocessError):
    """Fewer usable frames than ``min_frames`` remain after excluding the failed ones."""


def format_frames(indices: list[int] | tuple[int, ...], limit: int = 12) -> str:
    """Compact list of frame numbers: ``'0-4, 9, 12-13'`` (at most ``limit`` runs, then ``'...'``)."""
    idx = sorted(set(int(i) for i in indices))
    if not idx:
        return "none"
    runs: list[tuple[int, int]] = []
    start = prev = idx[0]
    for i in idx[1:]:
        if i != prev + 1:
            runs.append((start, prev))
            start = i
        prev = i
    runs.append((start, prev))
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    return ", ".join(parts) + (", ..." if len(runs) > limit else "")
