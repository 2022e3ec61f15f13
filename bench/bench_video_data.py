"""Measure the video data streams on the real clip ``single_face.mp4`` (and a synthetic occluder).

1. crop validity: how many crop pixels the default crop pads;
2. background plate: PSNR of the plate (moved by each frame's camera motion) against the background
   pixels of the held-out frames (the last ``background_holdout``, which the plate never saw), beside
   the same plate without motion compensation and one median colour (what a learned flat background
   can at best do);
3. occlusions: frames flagged on the clip; on the astronaut clip with a skin-coloured block pasted
   over the face in two frames: frames flagged and the share of the block covered by the mask.

Writes ``bench/results/video_data_cpu.json``, prints a table. Usage (from the repository root)::

    python -m bench.bench_video_data [--work data/bench_video_data] [--resolution 256]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.core.layout import SubjectLayout
from src.core.streams import read_background, read_valid
from src.preprocess import preprocess_video
from src.preprocess.background import background_pixels
from src.preprocess.clips import astronaut_frames
from src.preprocess.detect import CropBox, crop_frame
from src.utils.assets import find_asset
from src.utils.io import write_json
from src.utils.video import write_video

ROOT = Path(__file__).resolve().parents[1]


def _psnr(mse: float) -> float:
    return float(10 * np.log10(255**2 / mse))


def plate_scores(root: Path) -> dict:
    """Held-out background PSNR of the plate, with and without motion compensation, and a flat colour."""
    layout = SubjectLayout(root)
    meta = layout.read_meta()
    n, first = meta["n_frames"], meta["background"]["first_unused_frame"]
    valid = read_valid(layout, meta)
    margin = max(1, round(0.03 * meta["height"]))
    plate0 = read_background(layout, None, meta).permute(1, 2, 0).numpy() * 255
    train_bg = []
    for i in range(first):
        bg = background_pixels(layout.read_image("masks", i)[None], margin)[0] & valid
        train_bg.append(layout.read_image("frames", i)[bg])
    flat = np.median(np.concatenate(train_bg), 0)
    err = {"plate": [], "plate_no_motion": [], "flat_colour": []}
    for i in range(first, n):
        img = layout.read_image("frames", i).astype(np.float64)
        bg = background_pixels(layout.read_image("masks", i)[None], margin)[0] & valid
        plate = read_background(layout, i, meta).permute(1, 2, 0).numpy() * 255
        for k, p in (("plate", plate), ("plate_no_motion", plate0), ("flat_colour", flat[None, None])):
            err[k].append(((img - p)[bg] ** 2).mean())
    return {f"heldout_bg_psnr_{k}": round(_psnr(float(np.mean(v))), 2) for k, v in err.items()} | {
        "heldout_frames": n - first
    }


def occluder_scores(work: Path) -> dict:
    """The astronaut clip with a skin-coloured block over nose, cheek and eye in frames 2 and 5."""
    frames = astronaut_frames(8, 256).copy()
    box = (slice(80, 130), slice(120, 175))
    for i in (2, 5):
        frames[i][box] = (170, 130, 101)
    video = write_video(work / "occluded.mp4", frames)
    meta = preprocess_video(video, work / "occluded", {"resolution": 128, "min_frames": 3})
    layout = SubjectLayout(work / "occluded")
    truth = np.zeros((256, 256, 1), np.float32)
    truth[box] = 1
    truth = crop_frame(truth, CropBox(*meta["crop"]["box_xy_side"]), 128, "constant") > 0.5
    cover = [float((layout.read_image("occlusion", i) > 127)[truth].mean()) for i in (2, 5)]
    extra = [int(((layout.read_image("occlusion", i) > 127) & ~truth).sum()) for i in (2, 5)]
    return {"flagged": meta["occlusion"]["frames"], "truth": [2, 5],
            "block_covered": [round(c, 3) for c in cover], "pixels_outside_block": extra,
            "block_px": int(truth.sum())}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="data/bench_video_data")
    ap.add_argument("--resolution", type=int, default=256)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    video = find_asset("videos/single_face.mp4")
    t0 = time.perf_counter()
    meta = preprocess_video(video, work / "single_face", {"resolution": args.resolution})
    out = {
        "clip": "single_face.mp4", "resolution": args.resolution,
        "preprocess_s": round(time.perf_counter() - t0, 1),
        "crop": meta["crop"], "invalid_px": meta["valid"]["invalid_px"],
        "invalid_fraction": meta["valid"]["invalid_fraction"], "background": meta["background"],
        "occluded_frames": meta["occlusion"]["frames"], "timings": meta["timings"],
        **plate_scores(work / "single_face"), "astronaut_occluder": occluder_scores(work),
    }  # fmt: skip
    write_json(ROOT / "bench" / "results" / "video_data_cpu.json", out)
    occ = out["astronaut_occluder"]
    rows = [("invalid crop pixels", f"{out['invalid_px']} ({100 * out['invalid_fraction']:.1f}%)"),
            ("camera motion (max px)", out["background"]["max_motion_px"]),
            ("held-out bg PSNR: plate", out["heldout_bg_psnr_plate"]),
            ("held-out bg PSNR: plate, no motion", out["heldout_bg_psnr_plate_no_motion"]),
            ("held-out bg PSNR: one colour", out["heldout_bg_psnr_flat_colour"]),
            ("occluded frames (clip)", out["occluded_frames"]),
            ("occluder: flagged / covered", f"{occ['flagged']} / {occ['block_covered']}")]  # fmt: skip
    print("| measure | value |\n|---|---:|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
