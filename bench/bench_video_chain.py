"""The whole chain on a real video, timed step by step: train (with its test loop), evaluate, reenact, export.

What a user runs on their own clip, with the defaults of the chosen experiment; each step is a fresh process
(start-up and data loading included), so the total is what the user waits. The first step also preprocesses
and tracks the video unless its cache exists (``--fresh`` removes the cache first, so the total includes
them). Writes ``bench/results/video_chain_cpu.json`` (steps, seconds, the held-out scores) and prints a
table. Usage (from the repository root)::

    python -m bench.bench_video_chain --video ../shared/assets/videos/single_face.mp4 [--experiment nha_video]
        [--out logs/bench_video_chain] [--fresh] [--skip export]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from src.utils.io import write_json

ROOT = Path(__file__).resolve().parents[1]
SCORES = ("psnr", "ssim", "lpips", "fid", "csim", "psnr_masked", "lpips_masked")


def steps(video: Path, experiment: str, out: Path, extra: list[str]) -> list[tuple[str, list[str]]]:
    """(name, argv) of each step of the chain."""
    py, ckpt = sys.executable, out / "train" / "checkpoints" / "last.ckpt"
    return [
        ("train + test", [py, "train.py", f"experiment={experiment}", f"data.path={video}", "logger=csv",
                          f"hydra.run.dir={out / 'train'}", "callbacks.rich_progress_bar=null", *extra]),
        ("evaluate", [py, "evaluate.py", f"ckpt_path={ckpt}", f"out_dir={out / 'eval'}",
                      f"hydra.run.dir={out / 'eval'}"]),
        ("reenact smile", [py, "reenact.py", f"ckpt_path={ckpt}", "mode=preset", "preset=smile",
                           f"out_dir={out / 'reenact'}", f"hydra.run.dir={out / 'reenact'}",
                           "progress=false"]),
        ("reenact orbit", [py, "reenact.py", f"ckpt_path={ckpt}", "mode=orbit", f"out_dir={out / 'orbit'}",
                           f"hydra.run.dir={out / 'orbit'}", "progress=false"]),
        ("export", [py, "-m", "src.export", f"ckpt_path={ckpt}", f"out_dir={out / 'export'}",
                    f"hydra.run.dir={out / 'export'}"]),
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", required=True, type=Path)
    ap.add_argument("--experiment", default="nha_video")
    ap.add_argument("--out", type=Path, default=ROOT / "logs" / "bench_video_chain")
    ap.add_argument(
        "--fresh", action="store_true", help="remove the video's cache first (time preprocessing)"
    )
    ap.add_argument("--result", type=Path, default=None, help="default bench/results/video_chain_cpu.json")
    ap.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["evaluate", "reenact", "export"],
        help="leave steps out (the image avatar has no mesh to export: --skip export)",
    )
    ap.add_argument("extra", nargs="*", help="more train.py overrides")
    args = ap.parse_args()
    video = args.video.resolve()
    if not video.is_file():
        raise SystemExit(f"--video {video} is not a file; pass a selfie clip (mp4/mov/webm)")
    out = args.out.resolve() / args.experiment
    if out.exists():
        shutil.rmtree(out)
    if args.fresh:
        for cache in (ROOT / "data" / "videos").glob(f"{video.stem}_*px"):
            shutil.rmtree(cache)
    load0 = os.getloadavg()
    rows, t_all = [], time.time()
    for name, cmd in steps(video, args.experiment, out, args.extra):
        if name.split()[0] in args.skip:
            continue
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=ROOT)
        rows.append({"step": name, "seconds": round(time.time() - t0, 1)})
        print(f"{name}: {rows[-1]['seconds']} s", flush=True)
    total = round(time.time() - t_all, 1)
    evaluated = json.loads((out / "eval" / "metrics.json").read_text())
    result = {
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "torch": torch.__version__,
                    "loadavg_start": load0, "loadavg_end": os.getloadavg()},
        "video": str(video), "experiment": args.experiment, "fresh_cache": args.fresh,
        "overrides": args.extra,
        "steps": rows, "skipped": args.skip, "total_seconds": total,
        "heldout_scores": {k: evaluated.get(k) for k in SCORES},
    }  # fmt: skip
    path = args.result or ROOT / "bench" / "results" / "video_chain_cpu.json"
    write_json(path, result)
    print("| step | seconds |\n|---|---:|")
    for r in rows:
        print(f"| {r['step']} | {r['seconds']} |")
    print(f"| total | {total} |")
    print({k: v for k, v in result["heldout_scores"].items() if v is not None})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
