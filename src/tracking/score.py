"""Score a subject's tracking against its ground truth (synthetic subjects, or videos made from them).

All comparisons happen in camera space (the tracked and true world frames differ), with both cameras'
projections into the subject's own frames:

- ``landmark_px``: 2D reprojection error of the tracked 68 landmarks against the true ones, pixels at
  256 px (``_nonjaw``: points 17-67); ``detected_px``: the error of the landmarks tracking was given;
- ``rotation_deg``: geodesic angle between the true and tracked head orientations in the camera;
- ``expression_mae``: mean absolute error of the expression coefficients (same head model only), and
  ``expression_mae_zero``, that of predicting all zeros, for scale;
- ``gaze_deg``: angle between the true and tracked look directions of the eyes in the head frame (head
  models with a gaze rig, :mod:`src.headmodel.gaze`), and ``gaze_deg_zero``, that of looking ahead;
- ``vertex_mm``: mean distance of all posed vertices in the camera frame (includes the depth/scale
  ambiguity of a monocular fit); ``vertex_face_mm``: the same on the ``face`` region;
  ``vertex_face_aligned_mm``: face region after a per-frame rigid (rotation + translation) alignment;
  ``head_position_mm``: distance between the true and tracked mesh centroids (mostly depth).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from src.core.layout import LayoutError, SubjectLayout
from src.headmodel.rotation import axis_angle_to_matrix, matrix_to_axis_angle
from src.metrics.geometry import rigid_align
from src.render import Cameras
from src.utils.io import write_json, write_npy, write_npz


def _cameras(p: dict[str, np.ndarray], size: int) -> Cameras:
    """The cameras of a parameter dict (K, R, t: one shared or one per frame)."""
    return Cameras(*(torch.as_tensor(p[k], dtype=torch.float32) for k in ("K", "R", "t")), (size, size))


def _to_camera(points: np.ndarray, cams: Cameras) -> np.ndarray:
    """(N,P,3) world points -> camera space (N,P,3)."""
    return cams.transform(torch.tensor(np.asarray(points), dtype=torch.float32)).numpy()


def _project(points: np.ndarray, cams: Cameras) -> np.ndarray:
    """(N,P,3) world points -> pixels (N,P,2)."""
    return cams.project(torch.tensor(np.asarray(points), dtype=torch.float32)).numpy()


def _head_rot(p: dict[str, np.ndarray]) -> np.ndarray:
    """(N,3,3) head orientation in the camera: R_cam @ R_head."""
    return p["R"][None] @ axis_angle_to_matrix(torch.from_numpy(p["rotation"])).numpy()


def _geodesic_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) angle in degrees of the rotation between (N,3,3) rotations a and b: the norm of the relative
    rotation's axis-angle vector, in float64 (arccos of the trace alone read ~0.01 deg for identical
    rotations in float32; the axis-angle vector comes from the skew part, exact near zero)."""
    rel = torch.from_numpy(a.astype(np.float64) @ np.transpose(b.astype(np.float64), (0, 2, 1)))
    return np.degrees(matrix_to_axis_angle(rel).norm(dim=-1).numpy())


def _posed(hm, p: dict[str, np.ndarray], sl: slice) -> torch.Tensor:
    """(B,V,3) posed vertices of frames ``sl`` of a parameter dict."""
    e = torch.from_numpy(p["expression"][sl])
    jp = torch.from_numpy(p["joint_pose"][sl]) if p["joint_pose"].shape[1] else None
    ident = torch.from_numpy(p["identity"])[None].expand(e.shape[0], -1)
    return hm(ident, e, torch.from_numpy(p["rotation"][sl]), torch.from_numpy(p["translation"][sl]), jp)


@torch.no_grad()
def score_tracking(layout: SubjectLayout | str | Path, headmodel=None, chunk: int = 16) -> dict[str, float]:
    """Accuracy of ``tracking.npz`` against ``ground_truth/``.

    Args:
        layout: a subject with tracking.npz and ground_truth/ (params.npz, landmarks68_3d.npy, and
            vertices.npy for the vertex errors).
        headmodel: the head model the tracking used (needed for vertex errors); None skips them.
        chunk: frames per head-model evaluation.

    Returns:
        Flat dict of floats (see the module docstring), plus ``n_frames`` and ``size``.
    """
    layout = layout if isinstance(layout, SubjectLayout) else SubjectLayout(Path(layout))
    meta = layout.read_meta()
    tr, gt = layout.read_params("tracking"), layout.read_params("ground_truth")
    lmk3d_path = layout.gt_landmarks3d_path
    if not lmk3d_path.exists():
        raise LayoutError(f"{lmk3d_path} missing: scoring needs the true 3D landmarks")
    size = float(meta["height"])
    s = 256.0 / size
    out: dict[str, float] = {"n_frames": float(len(tr["expression"])), "size": size}
    cam_tr, cam_gt = _cameras(tr, int(size)), _cameras(gt, int(size))
    gt_2d = _project(np.load(lmk3d_path), cam_gt)
    hm = headmodel
    n = len(tr["expression"])
    if hm is not None:
        lm_tr = np.concatenate(
            [hm.landmarks(_posed(hm, tr, slice(a, a + chunk))).numpy() for a in range(0, n, chunk)]
        )
        tr_2d = _project(lm_tr, cam_tr)
        err = np.linalg.norm(tr_2d - gt_2d, axis=-1) * s
        out["landmark_px"] = float(err.mean())
        out["landmark_px_nonjaw"] = float(err[:, 17:].mean())
    obs = np.load(layout.landmarks68_path)
    det = np.linalg.norm(obs - gt_2d, axis=-1) * s
    out["detected_px"] = float(det.mean())
    out["detected_px_nonjaw"] = float(det[:, 17:].mean())
    out["rotation_deg"] = float(_geodesic_deg(_head_rot(tr), _head_rot(gt)).mean())
    if tr["expression"].shape == gt["expression"].shape:
        out["expression_mae"] = float(np.abs(tr["expression"] - gt["expression"]).mean())
        out["expression_mae_zero"] = float(np.abs(gt["expression"]).mean())  # predicting all zeros
        if getattr(hm, "gaze", None) is not None:
            d_tr, d_gt = (hm.gaze.directions(torch.from_numpy(p["expression"])) for p in (tr, gt))
            ahead = torch.zeros_like(d_gt)
            ahead[..., 2] = 1

            def angle(a: torch.Tensor, b: torch.Tensor) -> float:  # atan2: exact near 0, unlike acos
                a, b = a.double(), b.double()
                sin = torch.linalg.cross(a, b).norm(dim=-1)
                return float(torch.rad2deg(torch.atan2(sin, (a * b).sum(-1))).mean())

            out["gaze_deg"], out["gaze_deg_zero"] = angle(d_tr, d_gt), angle(ahead, d_gt)
    if hm is not None and layout.gt_vertices_path.exists():
        gt_v = np.load(layout.gt_vertices_path, mmap_mode="r")
        face = (
            (hm.vertex_regions == hm.region_names.index("face")).numpy()
            if "face" in hm.region_names
            else None
        )
        errs = {"vertex_mm": [], "vertex_face_mm": [], "vertex_face_aligned_mm": [], "head_position_mm": []}
        for a in range(0, n, chunk):
            sl = slice(a, a + chunk)
            v = _posed(hm, tr, sl).numpy()
            vt = _to_camera(v, cam_tr[sl] if len(cam_tr) > 1 else cam_tr)
            vg = _to_camera(gt_v[sl], cam_gt[sl] if len(cam_gt) > 1 else cam_gt)
            d = np.linalg.norm(vt - vg, axis=-1) * 1000
            errs["vertex_mm"].append(d.mean(1))
            errs["head_position_mm"].append(np.linalg.norm(vt.mean(1) - vg.mean(1), axis=-1) * 1000)
            if face is not None:
                errs["vertex_face_mm"].append(d[:, face].mean(1))
                xt, yt = torch.from_numpy(vt[:, face]), torch.from_numpy(vg[:, face])
                al = (rigid_align(xt, yt) - yt).norm(dim=-1).mean(-1).numpy()
                errs["vertex_face_aligned_mm"].append(al * 1000)
        out.update({k: float(np.concatenate(v).mean()) for k, v in errs.items() if v})
    return out


def attach_ground_truth(video_root: str | Path, synthetic_root: str | Path) -> None:
    """Give a subject preprocessed from a video of a synthetic subject that subject's ground truth.

    The video's frames are the synthetic frames (``meta.source_frames``) seen through the preprocessing
    crop, so the true camera's intrinsics become those of the crop (``CropBox.intrinsics_to_crop``).
    """
    from src.preprocess.detect import CropBox

    video, syn = SubjectLayout(Path(video_root)), SubjectLayout(Path(synthetic_root))
    meta, smeta = video.read_meta(), syn.read_meta()
    idx = np.asarray(meta["source_frames"], dtype=np.int64)
    gt = syn.read_params("ground_truth")
    box = CropBox(*meta["crop"]["box_xy_side"])
    per_frame = {k: gt[k][idx] for k in ("expression", "rotation", "translation", "joint_pose")}
    K = box.intrinsics_to_crop(gt["K"], int(meta["height"]))
    write_npz(video.gt_params_path, identity=gt["identity"], **per_frame, K=K, R=gt["R"], t=gt["t"])
    write_npy(video.gt_landmarks3d_path, np.load(syn.gt_landmarks3d_path)[idx])
    if syn.gt_vertices_path.exists():
        write_npy(video.gt_vertices_path, np.asarray(np.load(syn.gt_vertices_path, mmap_mode="r")[idx]))
    meta["available"]["ground_truth"] = True
    meta["ground_truth_from"] = {"root": str(syn.root), "config_hash": smeta.get("config_hash")}
    meta.get("absent", {}).pop("ground_truth", None)
    video.write_meta({k: v for k, v in meta.items() if k != "layout_version"})


def write_scores(path: str | Path, scores: dict) -> Path:
    """Write scores as JSON (rounded)."""
    return write_json(path, {k: round(float(v), 4) if isinstance(v, float) else v for k, v in scores.items()})
