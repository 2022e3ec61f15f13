"""``preprocess_video``: a selfie video -> the subject layout (frames, masks, segmentation, landmarks).

Two passes over the video (nothing but boxes is held in memory):

1. face detection on every selected frame -> per-frame status (ok / no_face / multiple_faces / too_small),
   cached in ``work/detections.npz``; too few usable frames is an error naming the frames and the cause;
2. one fixed square crop from the smoothed face track; per usable frame: crop + resize, FaceMesh 478,
   68-point landmarks, foreground mask and face-part labels, written with consecutive numbers.
   Frames where the landmarks fail are excluded and reported (never interpolated).

Resumable and cached like the synthetic generator: meta.json is written first with ``complete: false``
and the hash of the configuration and of the video; a re-run with the same hash skips finished work, and
``complete: true`` is written last. A different configuration or video starts again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from tqdm import tqdm

from src.core.layout import SEG_LABELS, SubjectLayout
from src.preprocess import detect as D
from src.preprocess.errors import (
    FaceTooSmallError,
    MultipleFacesError,
    NoFaceError,
    TooFewFramesError,
    format_frames,
)
from src.preprocess.landmarks import (
    MediapipeMesh,
    disagreement,
    make_landmarks68,
    mediapipe_to_ibug68,
    resolve_landmarks68,
)
from src.preprocess.segment import SEGMENTATION_SOURCE, SelfieSegmenter, face_parts
from src.preprocess.streams import write_streams
from src.preprocess.video import iter_frames, probe_video, video_fingerprint
from src.utils.confdir import config_dir
from src.utils.config import to_plain
from src.utils.io import write_npy, write_npz, write_png
from src.utils.signals import check_stop

log = logging.getLogger(__name__)

# bump when a code change alters the preprocessed output, so cached folders are rebuilt
PREPROCESS_VERSION = 2  # 2: valid.png, background plate, occlusion masks
STATUS_CODES = (D.OK, D.NO_FACE, D.MULTIPLE, D.TOO_SMALL, D.NO_LANDMARKS)
ABSENT_NORMALS = "no normal predictor with weights is available offline (preprocess.normals=none)"


def _yaml_defaults() -> dict[str, Any]:
    """conf/preprocess/default.yaml, the one place the preprocessing defaults are written."""
    cfg = OmegaConf.to_container(OmegaConf.load(config_dir() / "preprocess" / "default.yaml"), resolve=True)
    cfg.pop("defaults", None)  # the schema entry (src/utils/schemas.py), not an option
    return cfg


DEFAULTS: dict[str, Any] = _yaml_defaults()


def preprocess_config(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """``cfg`` over :data:`DEFAULTS` (nested dicts merged), as plain containers."""
    out = json.loads(json.dumps(DEFAULTS))
    for k, v in (to_plain(cfg) or {}).items():
        if k not in out:
            raise KeyError(f"unknown preprocessing option {k!r}; valid options: {sorted(out)}")
        out[k] = {**out[k], **v} if isinstance(out[k], dict) and isinstance(v, dict) else v
    return out


def preprocess_hash(video: str | Path, cfg: dict[str, Any], landmarks68: str) -> str:
    """Hash of the video's content fingerprint, the configuration, the resolved 68-point backend and the
    code version (``landmarks68: auto`` resolves differently once dlib or FAN weights are installed)."""
    blob = json.dumps(
        {"version": PREPROCESS_VERSION, "video": video_fingerprint(video), "cfg": cfg, "lmk68": landmarks68},
        sort_keys=True,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def planned_hash(video: str | Path, cfg: dict[str, Any] | None = None) -> str:
    """The hash :func:`preprocess_video` would give ``video`` with options ``cfg`` (nothing is run)."""
    cfg = preprocess_config(cfg)
    return preprocess_hash(video, cfg, resolve_landmarks68(cfg["landmarks68"], cfg["fan_weights"]))


def _decode_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    keys = ("max_fps", "max_frames", "start_s", "max_seconds", "allow_truncated")
    return {k: cfg[k] for k in keys}


def _detect_pass(video: Path, cfg: dict[str, Any], work: Path) -> dict[str, np.ndarray]:
    """Face boxes and status of every selected frame (cached in work/detections.npz)."""
    path = work / "detections.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    det = D.FaceDetector(**cfg["detector"])
    rows: dict[str, list] = {"raw_index": [], "time": [], "status": [], "box": [], "n_faces": [], "size": []}
    try:
        for fr in tqdm(iter_frames(video, **_decode_kwargs(cfg)), desc="face detection", unit="frame"):
            check_stop("preprocessing (face detection)")
            boxes, _ = det(fr.image)
            status, box = D.classify_frame(boxes, cfg["min_face_size"], cfg["multi_face_ratio"])
            rows["raw_index"].append(fr.raw_index)
            rows["time"].append(fr.time)
            rows["status"].append(STATUS_CODES.index(status))
            rows["box"].append(box if box is not None else np.full(4, np.nan, np.float32))
            rows["n_faces"].append(len(boxes))
            rows["size"].append(fr.image.shape[:2])
    finally:
        det.close()
    out = {k: np.asarray(v) for k, v in rows.items()}
    out["box"] = out["box"].reshape(-1, 4).astype(np.float32)
    write_npz(path, **out)
    return out


def check_usable(name: str, status: np.ndarray, boxes: np.ndarray, cfg: dict[str, Any], stage: str) -> None:
    """Raise the most specific error when fewer than ``min_frames`` frames are usable.

    Args:
        name: the video (for messages).
        status: (N,) indices into :data:`STATUS_CODES`.
        boxes: (N,4) largest face box per frame (NaN where none).
        cfg: preprocessing config.
        stage: "detection" or "landmarks" (for the message).
    """
    n, need = len(status), int(cfg["min_frames"])
    frames = {code: np.nonzero(status == STATUS_CODES.index(code))[0].tolist() for code in STATUS_CODES}
    n_ok = len(frames[D.OK])
    if n_ok >= need:
        return
    what = {
        D.NO_FACE: "no face found in frames",
        D.MULTIPLE: "more than one face in frames",
        D.TOO_SMALL: f"face smaller than {cfg['min_face_size']} px in frames",
        D.NO_LANDMARKS: "landmarks failed in frames",
    }
    causes = "; ".join(f"{what[c]} {format_frames(frames[c])}" for c in what if frames[c])
    head = f"{name}: only {n_ok} of {n} frames usable after {stage}, need {need} (preprocess.min_frames)"
    worst = max(what, key=lambda c: len(frames[c])) if causes else None
    if len(frames[D.NO_FACE]) == n:
        raise NoFaceError(
            f"{name}: no face found in any of its {n} frames; film the face frontally, well lit, unoccluded"
        )
    if worst == D.MULTIPLE:
        raise MultipleFacesError(
            f"{head}: {causes}; the video must show one person: crop or trim it to one face"
        )
    if worst == D.TOO_SMALL:
        sizes = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        biggest = float(np.nanmax(sizes)) if np.isfinite(sizes).any() else 0.0
        raise FaceTooSmallError(
            f"{head}: {causes} (largest {biggest:.0f} px); film closer or use a higher-resolution video, or "
            "lower preprocess.min_face_size"
        )
    cls = NoFaceError if worst == D.NO_FACE else TooFewFramesError
    raise cls(f"{head}{': ' + causes if causes else ''}; use a longer video, or lower preprocess.min_frames")


def preprocess_video(video: str | Path, out_root: str | Path, cfg: dict[str, Any] | None = None) -> dict:
    """Turn a video into the subject layout at ``out_root`` (cached, resumable).

    Args:
        video: mp4 / mov / webm / anything FFmpeg reads.
        out_root: subject folder.
        cfg: options over :data:`DEFAULTS` (see conf/preprocess/default.yaml).

    Returns:
        The meta dict written to meta.json.

    Raises:
        VideoReadError, NoFaceError, MultipleFacesError, FaceTooSmallError, TooFewFramesError.
    """
    video = Path(video)
    cfg = preprocess_config(cfg)
    info = probe_video(video)
    layout = SubjectLayout(Path(out_root))
    resolved68 = resolve_landmarks68(cfg["landmarks68"], cfg["fan_weights"])
    digest = preprocess_hash(video, cfg, resolved68)
    old = _read_meta(layout)
    if old.get("config_hash") == digest and old.get("complete"):
        log.info("preprocessed video is cached in %s", layout.root)
        return old
    if old and old.get("config_hash") != digest:
        for sub in ("frames", "masks", "segmentation", "normals", "occlusion", "work", "overlays"):
            shutil.rmtree(layout.root / sub, ignore_errors=True)
        for f in (
            layout.landmarks68_path,
            layout.landmarks478_path,
            layout.tracking_path,
            layout.valid_path,
            layout.background_path,
            layout.background_coverage_path,
            layout.background_motion_path,
        ):
            f.unlink(missing_ok=True)
    work = layout.root / "work"
    meta: dict[str, Any] = {
        "complete": False, "source": "video", "config": cfg, "config_hash": digest,
        "video": {**info.as_dict(), "path": str(video.resolve())}, "head_model": None,
        "seg_labels": SEG_LABELS, "landmarks68_source": resolved68,
    }  # fmt: skip
    layout.write_meta(meta)
    t0 = time.perf_counter()
    dets = _detect_pass(video, cfg, work)
    t_detect = time.perf_counter() - t0
    status = dets["status"].copy()
    check_usable(str(video), status, dets["box"], cfg, "face detection")
    ok = np.nonzero(status == STATUS_CODES.index(D.OK))[0]
    smooth = D.smooth_track(dets["box"][ok], cfg["crop"]["smooth_window"])
    crop = cfg["crop"]
    frame_hw = tuple(int(v) for v in dets["size"][ok[0]])
    box = D.sequence_crop(smooth, crop["scale"], crop["shift_y"], frame_hw, crop["min_scale"])
    res = int(cfg["resolution"])
    face_px = float(np.median(np.sqrt(np.prod(smooth[:, 2:] - smooth[:, :2], 1)))) * res / box.side

    t1 = time.perf_counter()
    kept, lmk478, lmk68, fallback = _crop_pass(video, cfg, layout, work, dets, status, box, resolved68)
    t_crop = time.perf_counter() - t1
    check_usable(str(video), status, dets["box"], cfg, "landmark detection")

    write_npy(layout.landmarks68_path, np.stack(lmk68).astype(np.float32))
    write_npy(layout.landmarks478_path, np.stack(lmk478).astype(np.float32))
    t2 = time.perf_counter()
    extra_meta, extra_available, extra_absent = write_streams(layout, cfg, box, frame_hw, np.stack(lmk478))
    t_streams = time.perf_counter() - t2
    excluded = {
        code: dets["raw_index"][status == STATUS_CODES.index(code)].tolist() for code in STATUS_CODES[1:]
    }
    if fallback:
        log.warning(
            "%s found no face, or one far from FaceMesh's, in %d frames (%s); their 68 points are FaceMesh's "
            "mapped points (meta.landmarks68_fallback_frames)",
            resolved68,
            len(fallback),
            format_frames(fallback),
        )
    if any(excluded.values()):
        log.warning(
            "excluded frames (source frame numbers): %s",
            "; ".join(f"{k}: {format_frames(v)}" for k, v in excluded.items() if v),
        )
    seg_on = cfg["segmentation"] == "selfie"
    fps = info.fps if not cfg["max_fps"] else min(info.fps or cfg["max_fps"], cfg["max_fps"])
    absent = {
        "normals": ABSENT_NORMALS,
        "ground_truth": "real video",
        "tracking": "run tracking",
        **extra_absent,
    }
    if not seg_on:
        absent["masks"] = absent["segmentation"] = "preprocess.segmentation=none"
    elif not cfg["face_parts"]:
        absent["segmentation"] = "preprocess.face_parts=false"
    meta.update(
        complete=True, n_frames=len(kept), height=res, width=res, fps=fps,
        available={"masks": seg_on, "segmentation": seg_on and bool(cfg["face_parts"]), "normals": False,
                   "landmarks68": True, "landmarks478": True, "tracking": False, "ground_truth": False,
                   **extra_available},
        absent=absent,
        mask_source=SelfieSegmenter.source if seg_on else None,
        segmentation_source=SEGMENTATION_SOURCE if seg_on and cfg["face_parts"] else None,
        source_frames=[int(dets["raw_index"][i]) for i in kept],
        selected_frames=[int(i) for i in kept],
        source_times=[float(dets["time"][i]) for i in kept],
        n_decoded=int(len(status)), excluded=excluded, landmarks68_fallback_frames=fallback,
        crop={"box_xy_side": box.as_list(), "source_size": [info.height, info.width],
              "face_size_px": round(face_px, 1)},
        timings={"detection_s": round(t_detect, 3), "crop_landmarks_masks_s": round(t_crop, 3),
                 "background_occlusion_s": round(t_streams, 3),
                 "s_per_frame": round((t_detect + t_crop + t_streams) / max(1, len(status)), 4)},
        **extra_meta,
    )  # fmt: skip
    if face_px < 0.2 * res:
        log.warning(
            "the face is only %.0f px in the %d px crop (the head moves a lot); consider a shorter clip",
            face_px,
            res,
        )
    layout.write_meta(meta)
    if not cfg["keep_work"]:
        shutil.rmtree(work / "lmk", ignore_errors=True)
    log.info("preprocessed %d of %d frames into %s", len(kept), len(status), layout.root)
    return meta


def _read_meta(layout: SubjectLayout) -> dict:
    try:
        return json.loads(layout.meta_path.read_text()) if layout.meta_path.exists() else {}
    except json.JSONDecodeError:
        return {}


def _crop_pass(video, cfg, layout, work, dets, status, box, resolved68):
    """Crop, landmarks, masks and labels of the usable frames; updates ``status`` in place.

    Returns:
        kept (list of indices into the detection arrays), lmk478 and lmk68 (lists of (478,2) / (68,2)),
        and the output frames whose 68 points fell back to FaceMesh's mapped points.
    """
    res = int(cfg["resolution"])
    ok_code = STATUS_CODES.index(D.OK)
    mesh = MediapipeMesh(static_image_mode=True)
    lmk68_backend = make_landmarks68(resolved68, cfg["fan_weights"], cfg["dlib_upsample"])
    seg = SelfieSegmenter() if cfg["segmentation"] == "selfie" else None
    kept: list[int] = []
    fallback: list[int] = []  # output frames whose 68 points are FaceMesh's (the 68-point backend missed)
    lmk478: list[np.ndarray] = []
    lmk68: list[np.ndarray] = []
    todo = int((status == ok_code).sum())
    bar = tqdm(total=todo, desc="crop, landmarks, masks", unit="frame")
    try:
        for fr in iter_frames(video, **_decode_kwargs(cfg)):
            check_stop("preprocessing (crop, landmarks, masks; finished frames are cached)")
            i = fr.index
            if i >= len(status) or status[i] != ok_code:
                continue
            bar.update(1)
            cache = work / "lmk" / f"{int(dets['raw_index'][i]):06d}.npz"
            j = len(kept)
            if cache.exists():
                with np.load(cache) as z:
                    done = {k: z[k] for k in z.files}
                if not done["ok"]:
                    status[i] = STATUS_CODES.index(D.NO_LANDMARKS)
                    continue
                if layout.frame_path("frames", j).exists():
                    kept.append(i)
                    lmk478.append(done["lmk478"])
                    lmk68.append(done["lmk68"])
                    if done["fallback"]:
                        fallback.append(j)
                    continue
            img = D.crop_frame(fr.image, box, res, cfg["crop"]["pad_mode"])
            faces = mesh(img)
            pts68 = None
            if faces:
                centre = np.array([res / 2, res / 2])
                pts = min(faces, key=lambda f: np.linalg.norm(f[:468].mean(0) - centre))
                if lmk68_backend is not None:
                    hint = np.concatenate([pts[:468].min(0), pts[:468].max(0)])
                    pts68 = lmk68_backend(img, hint)
                    if pts68 is not None and disagreement(pts68, pts) > cfg["landmarks68_max_disagreement"]:
                        pts68 = None  # far from FaceMesh's: a wrong box, or a frontal shape on a turned head
                if pts68 is None:  # the 68-point backend missed (or misplaced) this frame: FaceMesh's points
                    pts68 = mediapipe_to_ibug68(pts)
                    if lmk68_backend is not None:
                        fallback.append(j)
            if pts68 is None:
                status[i] = STATUS_CODES.index(D.NO_LANDMARKS)
                write_npz(cache, ok=np.array(False))
                continue
            write_png(layout.frame_path("frames", j), img)
            if seg is not None:
                mask = seg(img)
                write_png(layout.frame_path("masks", j), mask)
                if cfg["face_parts"]:
                    write_png(layout.frame_path("segmentation", j), face_parts(pts, mask))
            write_npz(cache, ok=np.array(True), lmk478=pts.astype(np.float32), lmk68=pts68.astype(np.float32),
                      fallback=np.array(bool(fallback) and fallback[-1] == j))  # fmt: skip
            kept.append(i)
            lmk478.append(pts)
            lmk68.append(pts68)
    finally:
        bar.close()
        mesh.close()
        if seg is not None:
            seg.close()
    return kept, lmk478, lmk68, fallback
