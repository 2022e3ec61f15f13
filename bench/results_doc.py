"""Write ``docs/results.md`` and the README's results table from the benchmark records.

Every number in the two comes from a JSON record under ``bench/results/`` (each written by the benchmark
named beside its table, with the date it ran), so the documents never hold a figure no run produced.
``--main <dir>`` first records the main job's held-out scores (``<dir>/eval/metrics.json``, written by
``make main``) into ``bench/results/main_cpu.json``; ``--yardstick <dir>`` does the same for
``make yardstick``. ``--check`` writes nothing and exits 1 when a document differs from what the
records give (the test suite runs it). Usage::

    python -m bench.results_doc [--main outputs/main] [--yardstick outputs/yardstick] [--check]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from src.utils.io import atomic_write, write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin (python -m bench.results_doc) -->", "<!-- results:end -->"

# the held-out scores a job's eval/metrics.json holds, in table order
SCORES = (
    ("psnr", "PSNR↑"),
    ("ssim", "SSIM↑"),
    ("lpips", "LPIPS↓"),
    ("psnr_masked", "masked PSNR↑"),
    ("lpips_masked", "masked LPIPS↓"),
    ("fid", "FID↓"),
    ("csim", "CSIM↑"),
)
JOBS = {
    "main": ("main_cpu.json", "make main", "the real selfie clip `single_face.mp4`, mesh avatar"),
    "yardstick": ("yardstick_cpu.json", "make yardstick", "the synthetic subject, mesh avatar"),
}
FAMILY_NAMES = {"mesh": "mesh avatar", "image": "image avatar"}


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def record_job(kind: str, run_dir: Path, results: Path = RESULTS) -> Path:
    """Copy a finished job's held-out scores into its record (``<results>/<kind>_cpu.json``)."""
    metrics = run_dir / "eval" / "metrics.json"
    if not metrics.is_file():
        raise SystemExit(f"{metrics} not found: run `{JOBS[kind][1]}` first")
    scores = json.loads(metrics.read_text())
    started = run_dir / "train" / ".hydra" / "config.yaml"  # Hydra writes it as the first step starts
    ran = started.stat().st_mtime if started.is_file() else metrics.stat().st_mtime
    record = {
        "command": JOBS[kind][1],
        "date": datetime.datetime.fromtimestamp(ran, datetime.UTC).date().isoformat(),
        "subject": JOBS[kind][2],
        "scores": {k: scores[k] for k, _ in SCORES if k in scores},
    }
    if started.is_file():
        ended = max(p.stat().st_mtime for p in run_dir.rglob("*") if p.is_file())
        record["chain_minutes"] = round((ended - started.stat().st_mtime) / 60, 1)
    geometry = {k: v for k, v in scores.items() if k.startswith("geometry_")}
    if geometry:
        record["geometry"] = geometry
    return write_json(results / JOBS[kind][0], record)


def jobs_table() -> list[str]:
    """The main job and the yardstick: one row each."""
    rows = []
    for name, _, _ in JOBS.values():
        rec = _load(name)
        if rec:
            cells = " | ".join(_fmt(rec["scores"].get(k)) for k, _ in SCORES)
            minutes = f"{rec['chain_minutes']:.1f}" if rec.get("chain_minutes") else ""
            rows.append(f"| {rec['subject']} | {cells} | {minutes} | `{rec['command']}`, {rec['date']} |")
    if not rows:
        return []
    head = "| job | " + " | ".join(h for _, h in SCORES) + " | chain min | made by |"
    return [head, "|---|" + "---:|" * (len(SCORES) + 1) + "---|", *rows]


def geometry_lines() -> list[str]:
    """The yardstick's face geometry error against the ground-truth mesh (the synthetic subject only)."""
    rec = _load(JOBS["yardstick"][0])
    geo = (rec or {}).get("geometry")
    if not geo:
        return []
    return [
        "Face geometry of the yardstick against its ground truth: mean "
        f"{_fmt(geo.get('geometry_mean_mm'))} mm, Hausdorff {_fmt(geo.get('geometry_hausdorff_mm'))} mm, "
        f"after rigid alignment {_fmt(geo.get('geometry_aligned_mean_mm'))} mm.",
        "",
    ]


def real_video_tables(summary_only: bool = False) -> list[str]:
    """Per family: each person of the real-video benchmark, the mean and the worst."""
    rec = _load("real_videos_cpu.json")
    if not rec:
        return []
    out = []
    cols = (
        ("psnr", "PSNR↑"),
        ("ssim", "SSIM↑"),
        ("lpips", "LPIPS↓"),
        ("psnr_masked", "masked PSNR↑"),
        ("lpips_masked", "masked LPIPS↓"),
        ("akd_px", "AKD px↓"),
        ("chain_s", "chain min"),
    )
    for family in ("mesh", "image"):
        fam = rec.get(family)
        if not fam:
            continue
        command = "python -m bench.bench_real --families " + family
        if fam.get("overrides"):
            command += " -- " + " ".join(fam["overrides"])
        n = len(fam["per_person"])
        rows = [(f"mean of {n}", fam["mean"]), (f"worst of {n}", fam["worst"])]  # people measured so far
        if not summary_only:
            rows = list(fam["per_person"].items()) + rows
        out += [
            f"{FAMILY_NAMES[family]} (`{command}`, {fam.get('date', 'undated')}, "
            f"{rec['machine'].get('cpu_count')}-core CPU):",
            "",
            "| person | " + " | ".join(h for _, h in cols) + " |",
            "|---|" + "---:|" * len(cols),
        ]
        for person, row in rows:
            if "error" in row:
                out.append(f"| {person} | failed: {row['error']} |" + " |" * (len(cols) - 1))
                continue
            cells = [_fmt(row.get(k) / 60 if k == "chain_s" and row.get(k) else row.get(k)) for k, _ in cols]
            out.append(f"| {person} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def tracking_table() -> list[str]:
    rec = _load("tracking_cpu.json")
    if not rec:
        return []
    s = rec["settings"]
    out = [
        f"Tracking the synthetic subject ({s['frames']} frames at {s['resolution']} px, errors at 256 px; "
        f"`python -m bench.bench_tracking`, {rec.get('date', 'undated')}):",
        "",
        "| landmarks | reprojection px | rotation deg | expression MAE | gaze deg | face mm, aligned "
        "| s/frame |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in rec["runs"].items():
        if "scores" not in run:
            continue
        sc, t = run["scores"], run["tracking"]["timings"]
        cells = (
            sc["landmark_px"],
            sc["rotation_deg"],
            sc["expression_mae"],
            sc["gaze_deg"],
            sc["vertex_face_aligned_mm"],
            t["s_per_frame"],
        )
        out.append(f"| {name.replace('_', ' ')} | " + " | ".join(_fmt(c) for c in cells) + " |")
    zero = next(iter(rec["runs"].values()))["scores"]["expression_mae_zero"]
    out += ["", f"A neutral guess (all expressions zero) has expression MAE {_fmt(zero)}.", ""]
    return out


def speed_tables() -> list[str]:
    out = []
    nha, selfie, render = _load("nha_cpu.json"), _load("selfie_cpu.json"), _load("render_cpu.json")
    if render:
        out += [
            f"Renderer, ICT-FaceKit full mesh, batch 1 (`python -m bench.bench_render`, "
            f"{render['timestamp'][:10]}, {render['threads']} threads):",
            "",
            "| size | raster ms | forward ms | forward + backward ms | peak RSS MB |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in render["results"]:
            if r.get("batch") == 1:
                out.append(
                    f"| {r['size']} | {r['raster_ms']:.0f} | {r['forward_ms']:.0f} | "
                    f"{r['fwd_bwd_ms']:.0f} | {r['max_rss_mb']:.0f} |"
                )
        out.append("")
    if nha:
        out += [
            f"Mesh avatar (`python -m bench.bench_nha`, {nha['timestamp'][:10]}, {nha['threads']} threads):",
            "",
            "| size | train step ms (batch 4) | render ms/frame | peak RSS MB |",
            "|---:|---:|---:|---:|",
        ]
        out += [
            f"| {r['size']} | {r['train_step_ms']:.0f} | {r['render_ms_per_frame']:.0f} "
            f"| {r['max_rss_mb']:.0f} |"
            for r in nha["results"]
        ]
        out.append("")
    if selfie:
        out += [
            f"Image avatar (`python -m bench.bench_selfie`, {selfie['timestamp'][:10]}):",
            "",
            "| size | generator fps | frame fps (with the head-model render) | train step ms |",
            "|---:|---:|---:|---:|",
        ]
        out += [
            f"| {r['size']} | {r['gen_fps']:.1f} | {r['frame_fps']:.1f} | "
            f"{_fmt(round(r['train_step_ms'])) if 'train_step_ms' in r else ''} |"
            for r in selfie["results"]
        ]
        out.append("")
    return out


def results_md() -> str:
    lines = [
        "# Results",
        "",
        "Generated by `python -m bench.results_doc` from the records in `bench/results/`; do not edit by",
        "hand. Each table names the command that made it and the date it ran. Held-out frames are the last",
        "16 of each clip. History and experiments that were tried and not kept: [history.md](history.md).",
        "",
        "## Main job and synthetic yardstick",
        "",
        *(
            jobs_table()
            or ["No record yet: run `make main`, then `python -m bench.results_doc --main outputs/main`."]
        ),
        "",
        *geometry_lines(),
        "## Real-video benchmark",
        "",
        "Four people of `$AVATAR_ASSETS/videos`, the whole chain with defaults (`make bench-real`). AKD:",
        "mean distance of FaceMesh points on the video frame and the avatar's frame at 256 px. Contact",
        "sheets: `bench/results/real_videos_cpu/`.",
        "",
        *real_video_tables(),
        "## Tracking",
        "",
        *tracking_table(),
        "## Speed (CPU)",
        "",
        *speed_tables(),
    ]
    return "\n".join(lines).rstrip() + "\n"


def readme_block() -> str:
    """The README's table: the main job, then each family's mean and worst over the four people."""
    jobs = jobs_table()
    lines = [*jobs, ""] if jobs else []
    lines += real_video_tables(summary_only=True)
    return "\n".join([BEGIN, *lines, "All tables: [docs/results.md](docs/results.md).", END])


def render_readme(text: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md lacks the results markers {BEGIN!r} ... {END!r}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + readme_block() + tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--main", type=Path, help="record this make-main run (its eval/metrics.json) first")
    ap.add_argument("--yardstick", type=Path, help="record this make-yardstick run first")
    ap.add_argument("--check", action="store_true", help="exit 1 if a document is out of date")
    args = ap.parse_args(argv)
    if args.main:
        print(f"recorded {record_job('main', args.main)}")
    if args.yardstick:
        print(f"recorded {record_job('yardstick', args.yardstick)}")
    want = {DOC: results_md(), README: render_readme(README.read_text())}
    stale = [p for p, t in want.items() if not p.is_file() or p.read_text() != t]
    if args.check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is out of date: run python -m bench.results_doc", file=sys.stderr)
        return 1 if stale else 0
    for p, t in want.items():
        atomic_write(p, lambda tmp, t=t: tmp.write_text(t))
    print("written: " + ", ".join(str(p.relative_to(ROOT)) for p in want))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
