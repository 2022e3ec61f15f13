"""Benchmark preprocessing + landmark tracking on CPU, scored against the synthetic subject's ground truth.

Runs (the synthetic subject is rendered once and cached under ``--work``):

1. tracking on the ground-truth landmarks of the synthetic subject;
2. the synthetic frames written to an MP4 and put through the whole video path (face detection, crop,
   FaceMesh, 68 landmarks from ``dlib`` (the ``auto`` choice here) and from ``mediapipe``, masks), then
   tracking on the 68 points; then dense tracking on FaceMesh's 478 points (``tracking.landmarks=dense``,
   the embedding of ``src/headmodel/data/ict_facemesh478.npz``, calibrated on the seed-1 subject, not
   this seed-0 one), and the same with the photometric refinement (``tracking.photometric.enabled``);
   then from the subject's true 478 points (the embedding on its true vertices, projected by the true
   camera; ``noise_px`` 0.5): the fit without the detector's error. The true parameters are mapped into
   the crop to score it;
3. gaze: a subject whose eyes wander (eyeLook weights up to ``GAZE``, turning the eyeballs through the
   head model's gaze rig) through the same video path and dense tracking, then tracked again from its
   true 478 points (the fit without detector error);
4. scikit-image's astronaut photo as a short clip (a real face): detection, landmarks, tracking; its
   reprojection error against the detected landmarks.

Writes ``bench/results/tracking_cpu.json`` and prints a table. Usage (from the repository root)::

    python -m bench.bench_tracking [--frames 120] [--resolution 256] [--work data/bench_tracking]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.core.layout import SubjectLayout
from src.datamodules.synthetic.generate import config_hash, generate_subject
from src.headmodel.dense import ICT_EMBEDDING, load_embedding, pose_offsets
from src.headmodel.ict import ICTHeadModel
from src.headmodel.rotation import axis_angle_to_matrix
from src.preprocess import preprocess_video
from src.preprocess.clips import write_astronaut_clip, write_subject_video
from src.preprocess.landmarks import dlib_available
from src.render import Cameras
from src.tracking import attach_ground_truth, score_tracking, track_subject
from src.utils.io import write_json

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("landmark_px", "landmark_px_nonjaw", "detected_px_nonjaw", "rotation_deg", "expression_mae",
        "expression_mae_zero", "gaze_deg", "gaze_deg_zero", "vertex_face_aligned_mm", "vertex_face_mm",
        "head_position_mm")  # fmt: skip
GAZE = 0.6  # peak eyeLook weight of the gaze subject (about +-20 degrees)


def synthetic(work: Path, hm, frames: int, res: int, gaze: float = 0.0) -> Path:
    """The synthetic subject (cached by its settings); ``gaze`` > 0: its eyes wander (eyeLook weights)."""
    cfg = {"resolution": res, "n_frames": frames, "seed": 0}
    extra = {"trajectory": {"gaze": gaze}} if gaze > 0 else {}
    root = work / (f"synthetic_{res}px_{frames}f" + (f"_gaze{gaze:g}" if gaze > 0 else ""))
    layout = SubjectLayout(root)
    if not (layout.exists() and layout.read_meta().get("config_hash") == config_hash({**cfg, **extra})):
        generate_subject(root, hm, config={**cfg, **extra}, **cfg, **extra)
    return root


def run_tracking(
    root: Path, hm, overlay: bool = False, landmarks: str = "68", photometric: bool = False, **extra
) -> dict:
    t0 = time.perf_counter()
    over = {"overlay": {"enabled": overlay}, "landmarks": landmarks, "photometric": {"enabled": photometric},
            **extra}  # fmt: skip
    info = track_subject(root, hm, over, force=True)
    return {"wall_s": round(time.perf_counter() - t0, 2), **info}


def true_dense_points(root: Path, hm) -> None:
    """Replace a subject's detected landmarks478.npy by its true 478 points (the embedding on the true
    vertices, with the embedding's pose offsets), projected by the true camera: the fit without detector
    error."""
    layout = SubjectLayout(root)
    gt = layout.read_params("ground_truth")
    verts = torch.from_numpy(np.load(layout.gt_vertices_path)).float()
    rot = torch.from_numpy(gt["rotation"])
    pts = hm.landmarks478(verts)
    if getattr(hm, "dense_offsets", None) is not None:
        pts = pts + pose_offsets(hm.dense_offsets.float(), rot) @ axis_angle_to_matrix(rot).transpose(1, 2)
    cams = Cameras(*(torch.as_tensor(gt[k], dtype=torch.float32) for k in ("K", "R", "t")),
                   (int(layout.read_meta()["height"]),) * 2)  # fmt: skip
    np.save(root / "landmarks478.npy", cams.project(pts).numpy().astype(np.float32))


def astro_row(meta: dict, pre_s: float, info: dict) -> dict:
    """The astronaut clip's summary of one tracking run."""
    return {
        "n_frames": meta["n_frames"], "landmarks": info["landmarks"],
        "preprocess_s_per_frame": round(pre_s / meta["n_decoded"], 4),
        "tracking_s_per_frame": info["timings"]["s_per_frame"], "overlay_s": info["timings"].get("overlay_s"),
        **{k: info[k] for k in ("landmark_px", "landmark_px_nonjaw", "fov_deg")},
    }  # fmt: skip


def hm_embedding_settings() -> dict:
    """The calibration settings stored with the packaged FaceMesh embedding."""
    return load_embedding(ICT_EMBEDDING).settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--astronaut-frames", type=int, default=24)
    ap.add_argument("--work", type=Path, default=ROOT / "data" / "bench_tracking")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tracking_cpu.json")
    args = ap.parse_args()
    load_start = os.getloadavg()
    hm = ICTHeadModel()
    work = args.work
    syn = synthetic(work, hm, args.frames, args.resolution)
    rows, runs = [], {}

    gt_root = work / "gt_landmarks"
    shutil.rmtree(gt_root, ignore_errors=True)
    shutil.copytree(syn, gt_root)
    info = run_tracking(gt_root, hm)  # no landmarks478.npy: 68 points
    runs["ground_truth_landmarks"] = {"tracking": info, "scores": score_tracking(gt_root, hm)}
    rows.append(("ground-truth landmarks", runs["ground_truth_landmarks"], None))

    video = write_subject_video(syn, work / "synthetic.mp4")
    backends = (["dlib"] if dlib_available() else []) + ["mediapipe"]
    for name in backends:
        root = work / f"video_{name}"
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        meta = preprocess_video(video, root, {"resolution": args.resolution, "landmarks68": name,
                                              "min_face_size": 40})  # fmt: skip
        pre_s = time.perf_counter() - t0
        attach_ground_truth(root, syn)
        info = run_tracking(root, hm)
        pre = {"wall_s": round(pre_s, 2), "s_per_frame": round(pre_s / meta["n_decoded"], 4)}
        pre.update(n_frames=meta["n_frames"], n_decoded=meta["n_decoded"], excluded=meta["excluded"])
        pre["fallback_frames"] = len(meta["landmarks68_fallback_frames"])
        runs[f"detected_{name}"] = {"preprocess": pre, "tracking": info, "scores": score_tracking(root, hm)}
        rows.append((f"detected ({name}) on the MP4", runs[f"detected_{name}"], pre_s / meta["n_decoded"]))
    if hm.has_dense:  # FaceMesh's 478 points of the same preprocessing (written by every backend)
        info = run_tracking(root, hm, landmarks="dense")
        runs["detected_dense478"] = {"preprocess": pre, "tracking": info, "scores": score_tracking(root, hm),
                                     "embedding": hm_embedding_settings()}  # fmt: skip
        rows.append(("dense FaceMesh 478 on the MP4", runs["detected_dense478"], pre_s / meta["n_decoded"]))
        info = run_tracking(root, hm, landmarks="dense", photometric=True)
        runs["detected_dense478_photometric"] = {"preprocess": pre, "tracking": info,
                                                 "scores": score_tracking(root, hm)}  # fmt: skip
        rows.append(("dense 478 + photometric refinement", runs["detected_dense478_photometric"], None))
        # the same subject from its true 478 points: what the fit reaches without the detector's error
        # (noise_px 0.5 as for the ground-truth 68 points, whose auto value it is)
        exact = work / "video_true478"
        shutil.rmtree(exact, ignore_errors=True)
        shutil.copytree(root, exact)
        true_dense_points(exact, hm)
        info = run_tracking(exact, hm, landmarks="dense", noise_px=0.5)
        runs["true_dense478"] = {"tracking": info, "scores": score_tracking(exact, hm)}
        rows.append(("true 478 points (no detector error)", runs["true_dense478"], None))

        # gaze: a subject whose eyes wander, through the same video path; then its true 478 points
        gaze_syn = synthetic(work, hm, args.frames, args.resolution, gaze=GAZE)
        root = work / "video_gaze"
        shutil.rmtree(root, ignore_errors=True)
        gaze_video = write_subject_video(gaze_syn, work / "synthetic_gaze.mp4")
        pcfg = {"resolution": args.resolution, "landmarks68": "mediapipe", "min_face_size": 40}
        preprocess_video(gaze_video, root, pcfg)
        attach_ground_truth(root, gaze_syn)
        info = run_tracking(root, hm, landmarks="dense")
        runs["gaze_detected_dense478"] = {"tracking": info, "scores": score_tracking(root, hm)}
        rows.append((f"gaze subject ({GAZE:g}): dense 478 on the MP4", runs["gaze_detected_dense478"], None))
        true_dense_points(root, hm)
        info = run_tracking(root, hm, landmarks="dense")
        runs["gaze_true_dense478"] = {"tracking": info, "scores": score_tracking(root, hm)}
        rows.append(("gaze subject: true 478 points", runs["gaze_true_dense478"], None))

    clip = write_astronaut_clip(work / "astronaut.mp4", n=args.astronaut_frames, size=256)
    astro = {}
    for name in backends:
        root = work / f"astronaut_{name}"
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        meta = preprocess_video(clip, root, {"resolution": 256, "landmarks68": name, "min_frames": 4})
        pre_s = time.perf_counter() - t0
        info = run_tracking(root, hm, overlay=name == backends[0])
        astro[name] = astro_row(meta, pre_s, info)
    if hm.has_dense:
        astro["dense478"] = astro_row(meta, pre_s, run_tracking(root, hm, landmarks="dense"))
    runs["astronaut"] = astro

    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads_fit": 1, "platform": platform.platform(),
                    "torch": torch.__version__, "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
        "settings": {"frames": args.frames, "resolution": args.resolution, "head_model": "ICT-FaceKit light",
                     "tracking": "conf/tracking/default.yaml", "preprocess": "conf/preprocess/default.yaml"},
        "runs": runs,
    }  # fmt: skip
    write_json(args.out, result)
    print(f"\nSynthetic subject, {args.frames} frames at {args.resolution} px (errors at 256 px):\n")
    head = ["landmarks", "lmk px", "lmk px (no jaw)", "detector px (no jaw)", "rotation deg", "expr MAE",
            "expr MAE (zeros)", "gaze deg", "gaze deg (ahead)", "face mm (rigid-aligned)", "face mm (camera)",
            "head position mm", "fov deg",
            "preprocess s/frame", "tracking s/frame"]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for name, r, pre in rows:
        s = r["scores"]
        vals = [f"{s[k]:.3f}" if k in s else "-" for k in KEYS]
        pre_txt = f"{pre:.3f}" if pre is not None else "-"
        print(
            f"| {name} | "
            + " | ".join(vals)
            + f" | {r['tracking']['fov_deg']:.1f} | {pre_txt}"
            + f" | {r['tracking']['timings']['s_per_frame']:.3f} |"
        )
    print(
        f"\nAstronaut clip ({args.astronaut_frames} frames, 256 px): reprojection error vs detected landmarks"
    )
    for name, a in astro.items():
        print(
            f"  {name} ({a['landmarks']} points): {a['landmark_px']:.2f} px ({a['landmark_px_nonjaw']:.2f} "
            "without the jaw / stable dense points), "
            f"preprocess {a['preprocess_s_per_frame']:.3f} s/frame, "
            f"tracking {a['tracking_s_per_frame']:.3f} s/frame"
        )
    print(f"\nload average start {load_start}, end {os.getloadavg()}; results in {args.out}")


if __name__ == "__main__":
    main()
