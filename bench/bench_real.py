"""Real-video benchmark over every person: the whole chain with defaults on each clip, both avatar families.

For each clip and family this runs what a user runs (:mod:`bench.bench_video_chain`'s steps, each a fresh
process): preprocess + track + train + test, evaluate.py on the held-out frames, the smile preset, the
orbit and (mesh only) the export. The video's cache is removed first (``--keep-cache`` reuses it), so
``chain_s`` is the whole wait. Scores are evaluate.py's (``metrics.json``); AKD is
:class:`src.metrics.keypoints.KeypointDistance` with mediapipe FaceMesh on evaluate.py's held-out frames
(mean point distance at 256 px, mouth and eyes apart). One contact sheet per person and family
(:mod:`bench.real_sheet`) goes to ``<result stem>/<family>_<clip>.jpg``.

Writes ``bench/results/real_videos_cpu.json``
(``{family: {per_person: {clip: {...}}, mean, worst}, machine}``; a clip already in the file is replaced,
other clips are kept) and the markdown table beside it, with each issue bar marked.
Usage (from the repository root)::

    python -m bench.bench_real [--clips a.mp4 b.mp4] [--families mesh image] [--keep-cache]
        [--result bench/results/real_videos_cpu.json] [-- more train.py overrides]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.bench_video_chain import steps
from bench.real_sheet import contact_sheet
from src.metrics.keypoints import KeypointDistance
from src.preprocess.landmarks import MediapipeMesh, facemesh_regions
from src.utils.assets import find_asset
from src.utils.io import read_png, write_json

ROOT = Path(__file__).resolve().parents[1]
PEOPLE = (
    "single_face.mp4",
    "WDA_AlexandriaOcasioCortez_000.mp4",
    "RD_Radio34_000.mp4",
    "WDA_BobMenendez_000.mp4",
)
FAMILIES = {"mesh": ("nha_video", ()), "image": ("selfie_video", ("export",))}
KEYS = (
    "psnr",
    "ssim",
    "lpips",
    "psnr_masked",
    "lpips_masked",
    "akd_px",
    "akd_mouth_px",
    "akd_eyes_px",
    "chain_s",
    "video_frames",
    "n_frames",
)
HIGHER_IS_BETTER = {"psnr", "ssim", "psnr_masked"}
# the bars of the real-video issue, per person (key: (op, value)); checked in the markdown table
BARS = {
    "mesh": {
        "psnr": (">=", 27.0),
        "ssim": (">=", 0.90),
        "lpips": ("<=", 0.08),
        "psnr_masked": (">=", 25.0),
        "lpips_masked": ("<=", 0.08),
        "akd_px": ("<=", 2.5),
        "akd_mouth_px": ("<=", 3.0),
        "akd_eyes_px": ("<=", 3.0),
        "chain_s": ("<=", 720.0),  # the whole chain of a clip of up to 200 frames
    },
    "image": {
        "psnr": (">=", 26.0),
        "akd_px": ("<=", 2.5),
        "akd_mouth_px": ("<=", 3.0),
        "akd_eyes_px": ("<=", 3.0),
        "chain_s": ("<=", 1200.0),
    },
}
MEAN_BARS = {"mesh": {"psnr": (">=", 28.5)}, "image": {"psnr": (">=", 27.0)}}


def akd(eval_dir: Path) -> dict[str, float]:
    """AKD of evaluate.py's held-out frames (``pred/`` against ``gt/``)."""
    mesh = MediapipeMesh(static_image_mode=True, max_faces=1)

    def detect(image: np.ndarray) -> np.ndarray | None:
        faces = mesh(image)
        return faces[0] if faces else None

    metric = KeypointDistance(detect, facemesh_regions(), size=256)
    for p in sorted((eval_dir / "pred").glob("*.png")):
        pred = torch.from_numpy(read_png(p)[..., :3]).permute(2, 0, 1)[None].float() / 255
        gt = (
            torch.from_numpy(read_png(eval_dir / "gt" / p.name)[..., :3]).permute(2, 0, 1)[None].float() / 255
        )
        metric.update(pred, gt)
    mesh.close()
    return metric.compute()


def video_frames(video: Path) -> int:
    """Decoded frame count of a clip (PyAV)."""
    import av

    with av.open(str(video)) as c:
        return sum(1 for _ in c.decode(video=0))


def run_person(video: Path, family: str, out: Path, keep_cache: bool, extra: list[str]) -> dict:
    """The chain on one clip; the person's row (scores, AKD, seconds per step) and the sheet."""
    experiment, skip = FAMILIES[family]
    if out.exists():
        shutil.rmtree(out)
    if not keep_cache:
        for cache in (ROOT / "data" / "videos").glob(f"{video.stem}_*px"):
            shutil.rmtree(cache)
    seconds, t_all = {}, time.time()
    for name, cmd in steps(video, experiment, out, extra):
        if name.split()[0] in skip:
            continue
        t0 = time.time()
        log = out / "logs" / f"{name.replace(' ', '_').replace('+', '')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as fh:
            proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        seconds[name] = round(time.time() - t0, 1)
        print(f"  {family} {video.stem} {name}: {seconds[name]} s", flush=True)
        if proc.returncode:
            lines = [ln for ln in log.read_text().splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
            return {
                "error": f"{name} failed: {(lines or ['(no output)'])[-1].strip()} (log: {log})",
                "step_s": seconds,
            }
    chain = round(time.time() - t_all, 1)
    ev = json.loads((out / "eval" / "metrics.json").read_text())
    row = {k: ev.get(k) for k in ("psnr", "ssim", "lpips", "psnr_masked", "lpips_masked")}
    row.update(akd(out / "eval"))
    n_video = video_frames(video)
    row.update(
        n_frames=ev.get("num_frames"),
        video_frames=n_video,
        chain_s=chain,
        chain_per_200_frames_s=round(chain * 200 / max(n_video, 1), 1),
        step_s=seconds,
    )
    return row


def summarise(per_person: dict[str, dict]) -> dict[str, dict]:
    """Mean and worst (per key, over the people that finished) of the per-person rows."""
    done = [r for r in per_person.values() if "error" not in r]
    mean, worst = {}, {}
    for k in (*KEYS, "chain_per_200_frames_s"):
        vals = [r[k] for r in done if isinstance(r.get(k), (int, float)) and np.isfinite(r[k])]
        if not vals:
            continue
        mean[k] = float(np.mean(vals))
        worst[k] = float(min(vals) if k in HIGHER_IS_BETTER else max(vals))
    return {"mean": mean, "worst": worst, "n_people": len(done), "failed": len(per_person) - len(done)}


def _ok(v, bar) -> str:
    op, x = bar
    if not isinstance(v, (int, float)) or not np.isfinite(v):
        return " (n/a)"
    return "" if (v >= x if op == ">=" else v <= x) else " ✗"


def markdown(result: dict) -> str:
    """One table per family; a value that misses its bar is marked ✗."""
    cols = KEYS
    lines = [
        "# Real-video benchmark (CPU)",
        "",
        f"Machine: {result['machine'].get('cpu_count')} cores, torch {result['machine'].get('torch')}. "
        "Held-out frames of each clip, defaults; ✗ = misses the bar. `python -m bench.bench_real`.",
        "",
    ]
    for family in ("mesh", "image"):
        if family not in result:
            continue
        fam, bars = result[family], BARS[family]
        lines += [f"## {family}", "", "| person | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        rows = [(k, r) for k, r in fam["per_person"].items()]
        rows += [("**mean**", fam["mean"]), ("**worst**", fam["worst"])]
        for name, r in rows:
            if "error" in r:
                lines.append(f"| {name} | {r['error']} |" + " |" * (len(cols) - 1))
                continue
            bar_set = MEAN_BARS[family] if name == "**mean**" else bars
            cells = []
            for c in cols:
                v = r.get(c)
                txt = (
                    ""
                    if v is None
                    else (
                        f"{v:.3f}"
                        if isinstance(v, float) and abs(v) < 10
                        else f"{v:.1f}"
                        if isinstance(v, float)
                        else str(v)
                    )
                )
                cells.append(txt + (_ok(v, bar_set[c]) if c in bar_set and v is not None else ""))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--clips",
        nargs="+",
        type=Path,
        default=None,
        help="videos to run (default: the four benchmark people under $AVATAR_ASSETS/videos)",
    )
    ap.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=["mesh", "image"])
    ap.add_argument("--keep-cache", action="store_true", help="reuse the clips' preprocessing caches")
    ap.add_argument("--out", type=Path, default=ROOT / "logs" / "bench_real")
    ap.add_argument("--result", type=Path, default=ROOT / "bench" / "results" / "real_videos_cpu.json")
    ap.add_argument("extra", nargs="*", help="more train.py overrides (applied to every run)")
    args = ap.parse_args()
    clips = args.clips or [find_asset(Path("videos") / p) for p in PEOPLE]
    for c in clips:
        if not Path(c).is_file():
            raise SystemExit(f"--clips: {c} is not a file; pass video files (mp4/mov/webm)")
    result = json.loads(args.result.read_text()) if args.result.is_file() else {}
    load0 = os.getloadavg()
    for family in args.families:
        per_person = result.get(family, {}).get("per_person", {})
        for clip in clips:
            clip = Path(clip).resolve()
            print(f"{family}: {clip.name}", flush=True)
            row = run_person(
                clip, family, args.out.resolve() / family / clip.stem, args.keep_cache, args.extra
            )
            if "error" not in row:
                sheet = args.result.with_suffix("") / f"{family}_{clip.stem}.jpg"
                out = args.out.resolve() / family / clip.stem
                contact_sheet(out / "eval", out / "reenact", out / "orbit", sheet, title=clip.stem)
                row["sheet"] = str(sheet.relative_to(ROOT)) if sheet.is_relative_to(ROOT) else str(sheet)
            per_person[clip.stem] = row
            result[family] = {
                "experiment": FAMILIES[family][0],
                "date": datetime.date.today().isoformat(),
                "overrides": args.extra,
                "per_person": per_person,
                **summarise(per_person),
            }
            result["machine"] = {
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "platform": platform.platform(),
                "torch": torch.__version__,
                "python": sys.version.split()[0],
                "loadavg_start": load0,
                "loadavg_end": os.getloadavg(),
            }
            write_json(args.result, result)
            md = args.result.with_suffix(".md")
            tmp = md.with_name(md.name + ".tmp")
            tmp.write_text(markdown(result) + "\n")
            tmp.replace(md)
            print({k: row.get(k) for k in KEYS}, flush=True)
    print(markdown(result))
    print(f"written: {args.result}")


if __name__ == "__main__":
    main()
