"""GPU benchmark: the ``gpu`` tests, training steps and render speed of both families, peak memory.

One script for a lent GPU (``make bench-gpu``; under 8 minutes on one GPU): runs ``pytest -m gpu``,
times a training step of the mesh avatar and of the image avatar at 256 and 512 px (batch 4, every loss
term of the final stage), their render rates at 512 px (one frame), and the peak GPU memory of each row,
then writes ``bench/results/gpu.json``. ``--device cpu`` runs the same on the CPU (for proving the script
where no GPU is lent) and writes ``bench/results/gpu_on_cpu.json``, so a CPU run never stands for a GPU
one. Usage::

    python -m bench.bench_gpu [--device cuda|cpu] [--sizes 256 512] [--repeats 3] [--warmup 1] [--skip-tests]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import torch

from bench import bench_nha, bench_selfie
from src.utils.io import write_json

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"


def gpu_tests(timeout_s: int) -> dict:
    """``pytest -m gpu``: counts of passed, failed and skipped tests and the seconds it took."""
    t0 = time.time()
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", tail)}
    return {"returncode": proc.returncode, "summary": tail, "seconds": round(time.time() - t0, 1), **counts}


def run(device: torch.device, sizes: list[int], batch: int, repeats: int, warmup: int = 1) -> dict:
    """Both families' rows at each size: training step, render rate, peak GPU memory (CPU: max RSS)."""
    mesh, image = [], []
    for size in sizes:
        m = bench_nha.bench_size(size, batch, device, warmup=warmup, repeats=repeats)
        mesh.append({**m, "render_fps": 1000.0 / m["render_ms_per_frame"]})
        ms = m["render_ms_per_frame"]
        print(
            f"mesh avatar {size} px: train step {m['train_step_ms']:.0f} ms, render {ms:.0f} ms", flush=True
        )
        s = bench_selfie.bench_size(size, batch, device, warmup, repeats, True, [])
        image.append(s)
        print(f"image avatar {size} px: train step {s['train_step_ms']:.0f} ms, frame {s['frame_ms']:.0f} ms",
              flush=True)  # fmt: skip
    return {"mesh": mesh, "image": image}


def table(result: dict) -> str:
    mem = "peak GPU MB" if result["device"].startswith("cuda") else "max RSS MB"
    lines = [f"| family | size | train step ms (batch {result['batch']}) | render fps | {mem} |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for fam, rows in (("mesh avatar", result["mesh"]), ("image avatar", result["image"])):
        for r in rows:
            fps = r.get("render_fps", r.get("frame_fps"))
            m = r.get("peak_mem_mb") or r.get("max_rss_mb")
            lines.append(f"| {fam} | {r['size']} | {r['train_step_ms']:.0f} | {fps:.1f} | {m:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    ap.add_argument("--skip-tests", action="store_true", help="leave out pytest -m gpu")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here; use --device cpu to prove the script")
    t0 = time.time()
    name = f"cuda: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"
    result = {
        "date": datetime.date.today().isoformat(), "device": name, "machine": platform.platform(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": args.batch,
    }  # fmt: skip
    result["gpu_tests"] = None if args.skip_tests else gpu_tests(timeout_s=240)
    result.update(run(device, args.sizes, args.batch, args.repeats, args.warmup))
    result["repeats"], result["warmup"] = args.repeats, args.warmup
    result["seconds"] = round(time.time() - t0, 1)
    out = args.out or OUT / ("gpu.json" if device.type == "cuda" else "gpu_on_cpu.json")
    write_json(out, result)
    print(table(result))
    print(f"written {out} ({result['seconds']} s)")
    failed = result["gpu_tests"] and result["gpu_tests"]["returncode"] not in (0, 5)  # 5: none collected
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
