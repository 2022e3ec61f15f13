"""Per-person contact sheet of the real-video benchmark: video | avatar | difference, smile, orbit.

Rows of held-out frames (evaluate.py's ``pred/`` and ``gt/`` PNGs): the video frame, the avatar's frame
and their absolute difference (x4, clipped), so a person sees at a glance where the avatar is wrong. The
last row holds the middle frame of the smile preset and the two frames of the orbit where it turns
furthest to either side (RGBA frames are shown over mid grey, so an uncovered part shows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

DIFF_GAIN = 4.0


def _rgb(path: Path, size: int) -> np.ndarray:
    """(size,size,3) uint8 of a PNG (RGBA composited over grey)."""
    img = Image.open(path)
    if img.mode == "RGBA":
        grey = Image.new("RGBA", img.size, (128, 128, 128, 255))
        img = Image.alpha_composite(grey, img)
    return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR))


def _label(cell: np.ndarray, text: str) -> np.ndarray:
    img = Image.fromarray(cell)
    ImageDraw.Draw(img).text((4, 2), text, fill=(255, 255, 0))
    return np.asarray(img)


def pick(paths: list[Path], n: int) -> list[Path]:
    """``n`` evenly spaced entries of a sorted list (all of them when there are fewer)."""
    if len(paths) <= n:
        return paths
    idx = np.linspace(0, len(paths) - 1, n).round().astype(int)
    return [paths[i] for i in idx]


def orbit_extremes(frames: list[Path]) -> list[Path]:
    """The orbit frames a quarter and three quarters through (the furthest turn either side of a sweep)."""
    if not frames:
        return []
    return [frames[len(frames) // 4], frames[(3 * len(frames)) // 4]]


def contact_sheet(
    eval_dir: Path,
    smile_dir: Path | None,
    orbit_dir: Path | None,
    out: Path,
    rows: int = 4,
    size: int = 192,
    title: str = "",
) -> Path:
    """Compose the sheet and write it as a JPEG.

    Args:
        eval_dir: evaluate.py's out_dir (``pred/`` and ``gt/`` PNGs of the held-out frames).
        smile_dir: reenact.py's out_dir of the smile preset (``frames/``), or None.
        orbit_dir: reenact.py's out_dir of the orbit (``frames/``), or None.
        out: the JPEG to write.
        rows: held-out frames shown.
        size: side of one cell in pixels.
        title: text on the first cell.

    Returns:
        ``out``.

    Raises:
        FileNotFoundError: ``eval_dir`` has no predicted frames.
    """
    preds = sorted((eval_dir / "pred").glob("*.png"))
    if not preds:
        raise FileNotFoundError(
            f"no predicted frames in {eval_dir / 'pred'}; run evaluate.py with out_dir first"
        )
    grid = []
    for k, p in enumerate(pick(preds, rows)):
        gt, pred = _rgb(eval_dir / "gt" / p.name, size), _rgb(p, size)
        diff = np.clip(np.abs(gt.astype(np.float32) - pred) * DIFF_GAIN, 0, 255).astype(np.uint8)
        label = f"{title} frame {int(p.stem)}" if k == 0 else f"frame {int(p.stem)}"
        grid.append([_label(gt, label), _label(pred, "avatar"), _label(diff, f"|diff| x{DIFF_GAIN:g}")])
    extra = []
    if smile_dir is not None:
        smile = sorted((smile_dir / "frames").glob("*.png"))
        if smile:
            extra.append(_label(_rgb(smile[len(smile) // 2], size), "smile"))
    if orbit_dir is not None:
        for f in orbit_extremes(sorted((orbit_dir / "frames").glob("*.png"))):
            extra.append(_label(_rgb(f, size), f"orbit {int(f.stem)}"))
    if extra:
        extra += [np.zeros((size, size, 3), np.uint8)] * (3 - len(extra))
        grid.append(extra[:3])
    sheet = np.concatenate([np.concatenate(r, axis=1) for r in grid], axis=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    Image.fromarray(sheet).save(tmp, format="JPEG", quality=88)
    tmp.replace(out)
    return out
