"""Cross-reenactment measured for both avatar families: one table of identity kept, identity leaked and
expression transferred (``src/reenact/measure.py``), for avatars driven by another subject.

Each pair is ``name=<avatar checkpoint>@<driver subject folder>``; every pair runs
``reenact.py mode=cross cross_mode=expression_only`` into ``--out/<name>`` and reads its
``cross_metrics.json``. A pair whose driver is the avatar's own subject is the control: the best the
re-tracking and the descriptor can report for a faithful avatar.

Writes ``bench/results/cross_cpu.json`` and prints a markdown table. Usage (from the repository root)::

    python -m bench.bench_cross --out logs/bench_cross \\
        nha_syn_by_syn1=<nha ckpt>@data/synthetic/seed1_128px_100f \\
        selfie_syn_by_real=<selfie ckpt>@data/videos/single_face_128px
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from src.utils.io import write_json

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = (
    ("csim_avatar", "CSIM to avatar ↑"), ("csim_driver", "CSIM to driver ↓"),
    ("csim_avatar_driver", "avatar vs driver"), ("expression_corr", "expr. corr ↑"),
    ("landmark_change_error_mm", "lmk change err mm ↓"), ("still_face_landmark_change_mm", "still face mm"),
    ("frames_without_face", "no face"),
)  # fmt: skip


def run_pair(name: str, ckpt: str, source: str, out: Path, extra: list[str]) -> dict:
    """reenact.py mode=cross for one pair; returns its cross_metrics.json plus the wall time."""
    target = out / name
    cmd = [sys.executable, str(ROOT / "reenact.py"), f"ckpt_path={ckpt}", "mode=cross", f"source={source}",
           f"out_dir={target}", f"name={name}", "progress=false", *extra]  # fmt: skip
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT)
    res = json.loads((target / "cross_metrics.json").read_text())
    return {**res, "checkpoint": ckpt, "driver": source, "seconds": round(time.time() - t0, 1)}


def table(rows: dict[str, dict]) -> str:
    """Markdown table of the pairs."""

    def cell(v) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    head = "| pair | " + " | ".join(c[1] for c in COLUMNS) + " |"
    sep = "|---|" + "---:|" * len(COLUMNS)
    body = [f"| {n} | " + " | ".join(cell(r.get(k)) for k, _ in COLUMNS) + " |" for n, r in rows.items()]
    return "\n".join([head, sep, *body])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="+", help="name=<ckpt>@<driver subject folder>")
    ap.add_argument("--out", default="logs/bench_cross", help="reenactment folders")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "cross_cpu.json"))
    ap.add_argument(
        "--override", action="append", default=None,
        help="reenact.py overrides (default: cross_mode=expression_only: the avatar keeps its own facing "
        "pose, so head turns of the driver do not hide the face from the detector; expression is what is "
        "measured)",
    )  # fmt: skip
    args = ap.parse_args()
    rows = {}
    for pair in args.pairs:
        name, _, rest = pair.partition("=")
        ckpt, _, source = rest.partition("@")
        if not (name and ckpt and source):
            ap.error(f"pair {pair!r} is not name=<ckpt>@<driver folder>")
        extra = ["cross_mode=expression_only"] if args.override is None else args.override
        rows[name] = run_pair(name, ckpt, source, Path(args.out), extra)
        print(table({name: rows[name]}), flush=True)
    write_json(args.json, {"pairs": rows, "table": table(rows)})
    print(table(rows))


if __name__ == "__main__":
    main()
