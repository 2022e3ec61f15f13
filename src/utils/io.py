"""Atomic writes: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # the web app writes files with this module and loads no torch
    import torch


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    Args:
        path: final file path; parent folders are created.
        write: function writing the complete file to the path it is given.

    Returns:
        The final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=_jsonable)))


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float tensor in [0,1] (any shape; clamped) -> uint8 numpy array of the same shape."""
    return (x.detach().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Atomically write a uint8 (H,W) or (H,W,3) array as PNG."""
    if array.dtype != np.uint8:
        raise TypeError(f"write_png expects uint8, got {array.dtype}")
    return atomic_write(path, lambda p: Image.fromarray(array).save(p, format="PNG"))


def write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Atomically write one array as .npy."""
    return atomic_write(path, lambda p: np.save(p, array, allow_pickle=False))


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Atomically write arrays as an uncompressed .npz."""

    def _w(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, _w)


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG as a uint8 array ((H,W) or (H,W,3)); a clear error for unreadable files."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB")
            return np.array(im)
    except (OSError, ValueError) as e:
        raise OSError(f"cannot read image {path}: {e}; delete it and re-run preprocessing") from e
