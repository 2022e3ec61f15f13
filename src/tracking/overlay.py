"""Inspection overlays of a fit: frames with the given (green) and fitted (red) landmarks (occluded face
pixels tinted magenta, occluded frames labelled) and the shaded mesh blended on top, written as
``overlays/tracking.mp4`` and optionally logged to wandb."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from src.core.layout import SubjectLayout
from src.render import Cameras, MeshRenderer
from src.utils.video import write_video

log = logging.getLogger(__name__)


def hidden_regions(headmodel, regions: Sequence[str] | None = None) -> list[str]:
    """Regions left out of the mesh overlay, keeping only names the head model has.

    Args:
        headmodel: the fitted head model.
        regions: the list to use; None: the head model's own ``hidden_regions`` (transparent overlay
            parts, eyelash shells).
    """
    if regions is None:
        regions = headmodel.hidden_regions
    return [r for r in regions if r in headmodel.region_names]


def _dots(img: np.ndarray, pts: np.ndarray, color: tuple[int, int, int], r: int) -> None:
    for x, y in pts:
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(img, (int(x), int(y)), r, color, -1, lineType=cv2.LINE_AA)


@torch.no_grad()
def render_overlays(
    root: str | Path,
    headmodel,
    mesh: bool = True,
    max_frames: int | None = None,
    batch: int = 8,
    alpha: float = 0.5,
    hidden: Sequence[str] = (),
) -> np.ndarray:
    """Overlay frames of a tracked subject.

    Args:
        root: subject with tracking.npz.
        headmodel: the head model the tracking used.
        mesh: blend the shaded mesh over the frame.
        max_frames: at most this many frames, evenly spaced over the sequence (None: all).
        batch: frames rendered at once.
        alpha: mesh opacity.
        hidden: head-model regions not drawn (see :func:`hidden_regions`).

    Returns:
        (T,H,2W,3) uint8: left the frame with landmarks, right the mesh overlay (or the frame).
    """
    layout = SubjectLayout(Path(root))
    meta = layout.read_meta()
    p = {k: torch.from_numpy(v) for k, v in layout.read_params("tracking").items()}
    obs = np.load(layout.landmarks68_path)
    sel = np.arange(len(obs))
    if max_frames is not None and len(obs) > int(max_frames):
        sel = np.unique(np.linspace(0, len(obs) - 1, int(max_frames)).round().astype(int))
    n = len(sel)
    H, W = int(meta["height"]), int(meta["width"])
    r = max(1, round(H / 200))
    keep = ~headmodel.region_face_mask([h for h in hidden if h in headmodel.region_names])
    faces = headmodel.faces[keep]
    renderer = MeshRenderer()
    occluded = set((meta.get("occlusion") or {}).get("frames", []))
    out = np.zeros((n, H, 2 * W, 3), np.uint8)
    light = torch.tensor([0.3, -0.4, -1.0])
    for a in tqdm(range(0, n, batch), desc="tracking overlays", unit="batch"):
        sl = torch.from_numpy(sel[a : a + batch])
        b = len(sl)
        jp = p["joint_pose"][sl] if p["joint_pose"].shape[1] else None
        verts = headmodel(p["identity"][None].expand(b, -1), p["expression"][sl], p["rotation"][sl],
                          p["translation"][sl], jp)  # fmt: skip
        cams = Cameras(p["K"], p["R"], p["t"], (H, W))
        lmk = cams.project(headmodel.landmarks(verts)).numpy()
        rgb = None
        if mesh:
            rend = renderer(verts, faces, cams, light_dir=light, ambient=0.35, diffuse=0.65, soft_alpha=False)
            rgb = (rend["rgb"].clamp(0, 1) * 255).permute(0, 2, 3, 1).numpy()
            m = rend["mask"].permute(0, 2, 3, 1).numpy().astype(np.float32) * alpha
        for j in range(b):
            i = int(sl[j])
            frame = layout.read_image("frames", i)
            left = frame.copy()
            if meta["available"].get("occlusion"):  # occluders: magenta tint, kept out of the fit's terms
                occ = layout.read_image("occlusion", i) > 127
                left[occ] = (0.5 * left[occ] + [127, 0, 127]).astype(np.uint8)
                if i in occluded:
                    org = (4, 4 + 10 * r)
                    cv2.putText(left, "occluded", org, cv2.FONT_HERSHEY_SIMPLEX, 0.35 * r, (255, 0, 255), 1)
            _dots(left, obs[i], (0, 255, 0), r)
            _dots(left, lmk[j], (255, 0, 0), r)
            right = frame.astype(np.float32)
            if rgb is not None:
                right = right * (1 - m[j]) + rgb[j] * m[j]
            out[a + j, :, :W] = left
            out[a + j, :, W:] = right.round().clip(0, 255).astype(np.uint8)
    return out


def write_overlays(root: str | Path, headmodel, cfg: dict, fps: float | None = None) -> Path:
    """Render and write ``overlays/tracking.mp4``; also log it to an active wandb run if asked.

    Args:
        root: tracked subject.
        headmodel: the head model of the fit.
        cfg: tracking config (``overlay``: enabled, mesh, max_frames, hidden_regions; ``log_wandb``).
        fps: video rate (default: the subject's).

    Returns:
        The video path.
    """
    layout = SubjectLayout(Path(root))
    meta = layout.read_meta()
    ov = cfg["overlay"]
    hidden = hidden_regions(headmodel, ov.get("hidden_regions"))
    frames = render_overlays(root, headmodel, ov["mesh"], ov["max_frames"], hidden=hidden)
    path = write_video(layout.root / "overlays" / "tracking.mp4", frames, fps or meta.get("fps") or 25.0)
    log.info("tracking overlays: %s", path)
    if cfg.get("log_wandb"):
        log_video_to_wandb(path)
    return path


def log_video_to_wandb(path: Path, key: str = "tracking/overlay") -> bool:
    """Log a video file to the active wandb run (if any). Returns whether it was logged."""
    try:
        import wandb
    except ImportError:
        return False
    if wandb.run is None:
        return False
    wandb.run.log({key: wandb.Video(str(path), format="mp4")})
    return True
