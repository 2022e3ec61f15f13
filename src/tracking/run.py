"""``track_subject``: fit the head model to a subject's landmarks and write tracking.npz (cached, resumable).

Stages: focal search -> rigid -> full -> (optional) photometric. After each stage the fit is saved to
``work/tracking_state.npz`` with the configuration hash, so an interrupted run resumes after the last
finished stage; a finished fit with the same hash is not redone. ``meta.json`` gets
``available.tracking = true`` and a ``tracking`` entry (config, hash, head model, errors, timings).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.core.layout import SubjectLayout
from src.core.streams import read_landmark_visibility
from src.headmodel.dense import has_dense
from src.tracking.fitter import Tracker, focal_search
from src.tracking.overlay import write_overlays
from src.tracking.photometric import photometric_refine
from src.utils.config import to_plain
from src.utils.io import write_npz

log = logging.getLogger(__name__)

# bump when a code change alters the fit, so cached tracking is redone
TRACKING_VERSION = 2  # 2: distance-relative translation smoothness
LANDMARK_CHOICES = ("auto", "dense", "68")
STAGES = ("focal", "rigid", "full", "photometric")
# options that do not change the fitted parameters (left out of the hash)
OUTPUT_ONLY = ("overlay", "log_wandb", "num_threads")


def tracking_config(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """``cfg`` over the defaults of conf/tracking/default.yaml (nested dicts merged)."""
    from omegaconf import OmegaConf

    defaults = OmegaConf.to_container(
        OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "tracking" / "default.yaml")
    )
    for k, v in (to_plain(cfg) or {}).items():
        if k not in defaults:
            raise KeyError(f"unknown tracking option {k!r}; valid options: {sorted(defaults)}")
        defaults[k] = {**defaults[k], **v} if isinstance(defaults[k], dict) and isinstance(v, dict) else v
    return defaults


def resolve_auto(cfg: dict[str, Any], meta: dict, dense_available: bool = False) -> dict[str, Any]:
    """Resolve ``jaw_weight``, ``noise_px`` and ``landmarks`` set to 'auto'.

    Ground-truth projections (synthetic subjects) are exact and their jaw points are the model's own
    vertices; detected landmarks are noisy and their jaw follows the occluding contour. ``landmarks``:
    auto = "dense" (FaceMesh's 478 points) when ``dense_available`` (the subject has landmarks478.npy and
    the head model a dense embedding), else "68".
    """
    exact = meta.get("landmarks68_source") == "ground_truth_projection"
    out = dict(cfg)
    choice = str(out.get("landmarks", "auto"))
    if choice not in LANDMARK_CHOICES:
        raise ValueError(f"tracking.landmarks={choice!r}; use one of {LANDMARK_CHOICES}")
    if choice == "dense" and not dense_available:
        raise ValueError(
            "tracking.landmarks=dense needs landmarks478.npy in the subject and a head model with "
            "a FaceMesh embedding (python -m src.tracking.calibrate_dense); use landmarks=68"
        )
    out["landmarks"] = ("dense" if dense_available else "68") if choice == "auto" else choice
    if out["jaw_weight"] == "auto":
        out["jaw_weight"] = 1.0 if exact else 0.2
    if out["noise_px"] == "auto":
        out["noise_px"] = 0.5 if exact else 3.0
    out["jaw_weight"], out["noise_px"] = float(out["jaw_weight"]), float(out["noise_px"])
    return out


def tracking_hash(cfg: dict[str, Any], headmodel, landmarks: Path) -> str:
    """Hash of the fitting options, the head model and the landmarks file."""
    fit_cfg = {k: v for k, v in cfg.items() if k not in OUTPUT_ONLY}
    hm = {
        "type": type(headmodel).__name__, "path": str(getattr(headmodel, "path", "")),
        "n": [headmodel.n_identity, headmodel.n_expression, headmodel.n_joint_pose],
    }  # fmt: skip
    if cfg.get("landmarks") == "dense":  # the embedding is part of the model the fit sees
        emb = hashlib.sha1()
        for k in ("dense_faces", "dense_bary", "dense_weights", "dense_offsets"):
            if getattr(headmodel, k, None) is not None:
                emb.update(getattr(headmodel, k).detach().cpu().numpy().tobytes())
        hm["dense"] = emb.hexdigest()[:12]
        gaze = getattr(headmodel, "gaze", None)  # turns the iris points
        hm["gaze"] = None if gaze is None else [round(r, 6) for r in gaze.max_rad]
    blob = json.dumps({"v": TRACKING_VERSION, "cfg": fit_cfg, "hm": hm}, sort_keys=True, default=str)
    h = hashlib.sha1(blob.encode())
    h.update(landmarks.read_bytes())
    return h.hexdigest()[:12]


def _gaps(meta: dict, n: int) -> np.ndarray | None:
    """(N-1,) distance between consecutive frames in selected-frame units (excluded frames make gaps)."""
    src = meta.get("selected_frames") or meta.get("source_frames")
    return np.diff(np.asarray(src, np.float32)) if src and len(src) == n else None


def _plan(layout: SubjectLayout, meta: dict, headmodel, cfg: dict[str, Any] | None):
    """The resolved options, the landmarks file, the fit's hash and the visibility (None: all visible)."""
    dense_ok = layout.landmarks478_path.exists() and has_dense(headmodel)
    cfg = resolve_auto(tracking_config(cfg), meta, dense_ok)
    dense = cfg["landmarks"] == "dense"
    lmk_path = layout.landmarks478_path if dense else layout.landmarks68_path
    digest = tracking_hash(cfg, headmodel, lmk_path)
    visible = read_landmark_visibility(layout, meta, "landmarks478" if dense else "landmarks68")
    if visible is not None and (visible < 1).any():  # padded or occluded landmarks are left out of the fit
        digest = hashlib.sha256(digest.encode() + visible.tobytes()).hexdigest()[: len(digest)]
    else:
        visible = None
    return cfg, lmk_path, digest, visible


def planned_tracking_hash(root: str | Path, headmodel, cfg: dict[str, Any] | None = None) -> str:
    """The hash :func:`track_subject` would give the fit of the subject at ``root`` (nothing is fitted)."""
    layout = SubjectLayout(Path(root))
    return _plan(layout, layout.validate(), headmodel, cfg)[2]


def track_subject(
    root: str | Path, headmodel, cfg: dict[str, Any] | None = None, force: bool = False
) -> dict[str, Any]:
    """Fit ``headmodel`` to the landmarks of the subject at ``root``; write tracking.npz and meta.json.

    Args:
        root: subject folder with landmarks68.npy (a preprocessed video or a synthetic subject), and
            landmarks478.npy for dense tracking (``landmarks: auto|dense|68``, see resolve_auto).
        headmodel: the HeadModel to fit (ICT by default, FLAME when configured).
        cfg: tracking options (conf/tracking/default.yaml).
        force: refit even if a fit with the same configuration exists.

    Returns:
        The ``tracking`` entry written to meta.json.
    """
    layout = SubjectLayout(Path(root))
    meta = layout.validate()
    cfg, lmk_path, digest, visible = _plan(layout, meta, headmodel, cfg)
    dense = cfg["landmarks"] == "dense"
    dense_ok = layout.landmarks478_path.exists() and has_dense(headmodel)
    log.info(
        "tracking with %s landmarks%s",
        "FaceMesh's 478" if dense else "68",
        "" if dense or not dense_ok else " (dense available: set tracking.landmarks=auto or dense)",
    )
    done = meta.get("tracking") or {}
    if not force and done.get("config_hash") == digest and layout.tracking_path.exists():
        log.info("tracking is cached in %s", layout.tracking_path)
        if cfg["overlay"]["enabled"] and not (layout.root / "overlays" / "tracking.mp4").exists():
            write_overlays(layout.root, headmodel, cfg)
        return done
    obs = np.load(lmk_path).astype(np.float32)
    n, size = len(obs), int(meta["height"])
    gaps = _gaps(meta, n)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cfg["num_threads"])))
    try:
        info = _fit(layout, headmodel, obs, size, cfg, gaps, digest, force, visible)
    finally:
        torch.set_num_threads(threads)
    params = info.pop("params")
    write_npz(layout.tracking_path, **params)
    tracking = {"config": cfg, "config_hash": digest, "head_model": type(headmodel).__name__, **info}
    meta = layout.read_meta()
    meta["available"]["tracking"] = True
    meta.get("absent", {}).pop("tracking", None)
    meta["head_model"] = type(headmodel).__name__
    meta["tracking"] = tracking
    layout.write_meta({k: v for k, v in meta.items() if k != "layout_version"})
    if cfg["overlay"]["enabled"]:
        t0 = time.perf_counter()
        write_overlays(layout.root, headmodel, cfg)
        tracking["timings"]["overlay_s"] = round(time.perf_counter() - t0, 3)
        layout.write_meta({k: v for k, v in meta.items() if k != "layout_version"})
    log.info(
        "tracked %d frames in %.1f s (%.3f s/frame): landmark error %.2f px at 256 px (%.2f without the jaw)",
        n, info["timings"]["fit_s"], info["timings"]["s_per_frame"], info["landmark_px"],
        info["landmark_px_nonjaw"],
    )  # fmt: skip
    return tracking


def _fit(layout, headmodel, obs, size, cfg, gaps, digest, force, visible=None) -> dict[str, Any]:
    """Run (or resume) the stages; returns errors, timings, focal info and the params."""
    state_path = layout.root / "work" / "tracking_state.npz"
    state: dict[str, Any] = {}
    if state_path.exists() and not force:
        with np.load(state_path) as z:
            if str(z["config_hash"]) == digest:
                state = {k: z[k] for k in z.files}
    finished = int(state["stage"]) if state else -1
    fov = float(state["fov_deg"]) if state else float(cfg["focal"]["fov_deg"])
    search: dict[str, Any] = json.loads(str(state["search"])) if state else {}
    timings: dict[str, float] = json.loads(str(state["timings"])) if state else {}
    if finished >= 0:
        log.info("resuming tracking after stage '%s'", STAGES[finished])

    def save(stage: int, tk: Tracker) -> None:
        write_npz(state_path, stage=np.array(stage), config_hash=np.array(digest), fov_deg=np.array(fov),
                  search=np.array(json.dumps(search)), timings=np.array(json.dumps(timings)),
                  distance0=np.array(tk.distance0), **tk.params())  # fmt: skip

    def timed(name: str, fn):
        t0 = time.perf_counter()
        out = fn()
        timings[name] = round(time.perf_counter() - t0, 3)
        return out

    if finished < 0 and cfg["focal"]["mode"] == "search":
        search = timed("focal_search_s", lambda: focal_search(headmodel, obs, size, cfg, gaps, visible))
        fov = search["fov_deg"]
    elif cfg["focal"]["mode"] not in ("search", "fixed"):
        raise ValueError(f"tracking.focal.mode={cfg['focal']['mode']!r}; use search or fixed")
    fcfg = {**cfg, "focal": {**cfg["focal"], "fov_deg": fov}}
    if cfg["focal"]["mode"] == "fixed":
        fcfg["optimize_focal"] = False
    tk = Tracker(headmodel, obs, size, fcfg, gaps, visible)
    if state:
        tk.load_params(state)
        tk.distance0 = float(state["distance0"])
    else:
        tk.initialise()
    if finished < 0:
        save(0, tk)
    losses: dict[str, float] = {}
    if finished < 1:
        losses = timed("rigid_s", lambda: tk.run_stage("rigid", int(cfg["steps_rigid"])))
        save(1, tk)
    if finished < 2:
        losses = timed("full_s", lambda: tk.run_stage("full", int(cfg["steps"])))
        save(2, tk)
    if cfg["photometric"]["enabled"] and finished < 3:
        losses = timed("photometric_s", lambda: photometric_refine(tk, layout, headmodel, cfg["photometric"]))
        save(3, tk)
    with torch.no_grad():
        r = tk.residuals().numpy()
    fit_s = sum(v for k, v in timings.items() if k != "fit_s")
    timings.update(fit_s=round(fit_s, 3), s_per_frame=round(fit_s / len(obs), 4))
    return {
        "params": tk.params(), "fov_deg": round(math.degrees(2 * math.atan(0.5 * size / tk.focal.item())), 3),
        "focal_search": search, "final_loss": losses,
        "landmarks": cfg.get("landmarks", "68"),
        "landmark_px": float(r.mean()), "landmark_px_nonjaw": float(r[:, tk.core_points].mean()),
        "landmark_px_per_frame_max": float(r.mean(1).max()), "timings": timings,
    }  # fmt: skip
