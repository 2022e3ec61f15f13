"""Evaluate a folder of predicted frames against a folder of ground-truth frames (and optional masks).

Frames are matched by file name without extension (``0001.png`` matches ``0001.jpg``); PNG and JPEG are
read. Results are written as ``metrics.md`` (a markdown table) and ``metrics.json``, both atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from src.metrics.suite import ImageMetrics
from src.utils.io import atomic_write

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
COLUMNS = (
    ("psnr", "PSNR↑", 2), ("ssim", "SSIM↑", 4), ("lpips", "LPIPS↓", 4), ("fid", "FID↓", 2),
    ("csim", "CSIM↑", 4),
)  # fmt: skip


def _index(folder: str | Path, what: str) -> dict[str, Path]:
    """Map file stem -> path for the images in ``folder`` (non-recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {folder}")
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
            if p.stem in files:
                raise ValueError(
                    f"{what} folder {folder} has two images named {p.stem!r}: {files[p.stem].name}, {p.name}"
                )
            files[p.stem] = p
    if not files:
        raise ValueError(f"{what} folder {folder} contains no PNG/JPG images")
    return files


def _few(names: set[str], k: int = 5) -> str:
    items = sorted(names)
    return ", ".join(items[:k]) + (f" ... ({len(items)} in all)" if len(items) > k else "")


def match_frames(
    pred_dir: str | Path, gt_dir: str | Path, mask_dir: str | Path | None = None
) -> list[tuple[str, Path, Path, Path | None]]:
    """Pair frames by name.

    Returns:
        Sorted ``(name, pred_path, gt_path, mask_path_or_None)`` tuples.

    Raises:
        FileNotFoundError / ValueError: missing or empty folders, or names that do not match (a few listed).
    """
    preds, gts = _index(pred_dir, "prediction"), _index(gt_dir, "ground-truth")
    if set(preds) != set(gts):
        only_p, only_g = set(preds) - set(gts), set(gts) - set(preds)
        raise ValueError(
            f"frame names differ between {pred_dir} and {gt_dir}: "
            f"only in predictions: {_few(only_p) or '-'}; only in ground truth: {_few(only_g) or '-'}"
        )
    masks = _index(mask_dir, "mask") if mask_dir is not None else {}
    if mask_dir is not None and set(preds) - set(masks):
        raise ValueError(f"no mask in {mask_dir} for frames: {_few(set(preds) - set(masks))}")
    return [(n, preds[n], gts[n], masks.get(n)) for n in sorted(preds)]


def load_image(path: Path) -> torch.Tensor:
    """Read an image as a (3,H,W) float tensor in [0,1] (alpha dropped, grey expanded)."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def load_mask(path: Path) -> torch.Tensor:
    """Read a mask as a (1,H,W) float tensor in [0,1] (alpha channel if present, else luminance)."""
    with Image.open(path) as im:
        band = im.getchannel("A") if im.mode in ("RGBA", "LA") else im.convert("L")
        arr = np.asarray(band, dtype=np.float32) / 255.0
    return torch.from_numpy(arr)[None]


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    mask_dir: str | Path | None = None,
    metrics_cfg: Mapping | Any | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
    landmarks_fn: Callable[[np.ndarray], np.ndarray | None] | None = None,
) -> dict[str, Any]:
    """Compute PSNR/SSIM/LPIPS/FID/CSIM (masked variants when ``mask_dir`` is given) over matched frames.

    Args:
        pred_dir: folder of predicted frames.
        gt_dir: folder of ground-truth frames with the same names (extensions may differ).
        mask_dir: optional folder of ground-truth foreground masks with the same names.
        metrics_cfg: :meth:`ImageMetrics.from_config` keys (lpips, fid, lpips_weights, inception_weights,
            required).
        batch_size: frames per batch.
        device: where the metrics run.
        progress: show a tqdm progress bar.
        landmarks_fn: for CSIM: ground-truth frame (H,W,3) uint8 RGB -> (68,2) landmarks (pixels, project
            convention) or None when no face is found (the frame is left out of CSIM). None: CSIM uses
            the fixed centred crop on every frame.

    Returns:
        :meth:`ImageMetrics.compute`'s dict plus ``pred_dir``, ``gt_dir``, ``mask_dir``.
    """
    frames = match_frames(pred_dir, gt_dir, mask_dir)
    metrics = ImageMetrics.from_config(metrics_cfg).to(device)
    batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]] = []
    want_landmarks = landmarks_fn is not None and "csim" in metrics.metrics

    def flush() -> None:
        if batch:
            preds, gts, masks, lms = zip(*batch)
            mask = torch.stack(masks).to(device) if masks[0] is not None else None
            lm = torch.stack(lms) if lms[0] is not None else None
            metrics.update(torch.stack(preds).to(device), torch.stack(gts).to(device), mask, lm)
            batch.clear()

    for name, p_path, g_path, m_path in tqdm(frames, desc="evaluate", unit="frame", disable=not progress):
        p, g = load_image(p_path), load_image(g_path)
        if p.shape != g.shape:
            raise ValueError(
                f"frame {name}: prediction is {tuple(p.shape[1:])} but ground truth is {tuple(g.shape[1:])}"
            )
        m = None
        if m_path is not None:
            m = load_mask(m_path)
            if m.shape[1:] != g.shape[1:]:
                raise ValueError(
                    f"frame {name}: mask is {tuple(m.shape[1:])} but images are {tuple(g.shape[1:])}"
                )
        if batch and (
            len(batch) == batch_size or batch[0][0].shape != p.shape
        ):  # full, or frame size changes
            flush()
        lm = None
        if want_landmarks:
            found = landmarks_fn((g.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
            lm = torch.full((68, 2), float("nan")) if found is None else torch.as_tensor(found).float()
        batch.append((p, g, m, lm))
    flush()
    results = metrics.compute()
    results.update(
        pred_dir=str(pred_dir), gt_dir=str(gt_dir), mask_dir=None if mask_dir is None else str(mask_dir)
    )
    return results


def format_number(value: Any, digits: int) -> str:
    """``value`` with ``digits`` decimals; "n/a" for None or a non-finite number."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def format_table(results: Mapping[str, Any]) -> str:
    """Markdown table: rows unmasked/masked, columns PSNR↑ SSIM↑ LPIPS↓ FID↓, then frames and sources."""
    lines = ["| | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    rows = [("unmasked", "")]
    if any(k.endswith("_masked") for k in results if k != "num_frames_masked"):
        rows.append(("masked", "_masked"))
    for label, sfx in rows:
        lines.append(
            f"| {label} | " + " | ".join(format_number(results.get(k + sfx), d) for k, _, d in COLUMNS) + " |"
        )
    lines.append("")
    lines.append(
        f"Frames: {results.get('num_frames', 'n/a')}"
        + (f" (masked: {results['num_frames_masked']})" if "num_frames_masked" in results else "")
        + (
            f"; CSIM on {results['num_frames_csim']} (no face found: {results['num_frames_csim_skipped']})"
            if "num_frames_csim" in results
            else ""
        )
    )
    if "geometry_mean_mm" in results:
        lines.append(
            f"Geometry against ground truth (face region): mean {results['geometry_mean_mm']:.3f} mm, "
            f"Hausdorff {results['geometry_hausdorff_mm']:.3f} mm"
            + (
                f"; after rigid alignment per frame: mean {results['geometry_aligned_mean_mm']:.3f} mm"
                if "geometry_aligned_mean_mm" in results
                else ""
            )
        )
    lines.append("")
    lines.append("Weights:")
    lines.extend(f"- {k}: {v}" for k, v in results.get("sources", {}).items())
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, name: str, markdown: str, data: Any) -> tuple[Path, Path]:
    """Write ``<name>.md`` (the markdown text) and ``<name>.json`` (``data``) into ``out_dir``, atomically.

    Returns:
        (markdown path, json path).
    """
    out_dir = Path(out_dir)
    md = atomic_write(out_dir / f"{name}.md", lambda p: p.write_text(markdown, encoding="utf-8"))
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    js = atomic_write(out_dir / f"{name}.json", lambda p: p.write_text(text, encoding="utf-8"))
    return md, js


def write_table(results: Mapping[str, Any], out_dir: str | Path, name: str = "metrics") -> tuple[Path, Path]:
    """Write ``<name>.md`` (markdown table) and ``<name>.json`` into ``out_dir``, each atomically.

    Returns:
        (markdown path, json path).
    """
    return write_report(out_dir, name, format_table(results), dict(results))
