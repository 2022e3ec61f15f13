"""Benchmark the plain-PyTorch mesh renderer on the full ICT-FaceKit head mesh.

Measures, per (image size, batch size): the rasteriser alone, the full ``MeshRenderer`` forward (vertex
colours, SH shading, soft alpha), and forward + backward of ``rgb.mean() + alpha.mean()`` w.r.t. the vertices
and the vertex colours. Median wall time over ``--repeats`` runs after ``--warmup`` runs, plus the median
process CPU time (summed over threads; less sensitive to other load on a shared machine). Peak memory: CUDA
``max_memory_allocated`` per configuration; CPU the process max RSS (``ru_maxrss``, monotone over the run).

Usage::

    python -m bench.bench_render                       # CPU, sizes 128 256 512, batches 1 8
    python -m bench.bench_render --device cuda --repeats 10
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from src.render import Cameras, MeshRenderer, intrinsics_from_fov, look_at, rasterize, sh_ambient
from src.utils.assets import find_asset
from src.utils.io import write_json

ROOT = Path(__file__).resolve().parents[1]


def load_ict(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Template vertices (V,3) in metres and triangulated faces (F,3) of ICT-FaceKit light."""
    data = np.load(find_asset("ict_facekit/ict_facekit_light.npz"))
    verts = torch.from_numpy(data["template"].astype(np.float32)) * 0.01
    quads = torch.from_numpy(data["faces"].astype(np.int64))
    tri1 = quads[:, [0, 1, 2]]
    tri2 = quads[quads[:, 3] >= 0][:, [0, 2, 3]]
    return verts.to(device), torch.cat([tri1, tri2]).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, warmup: int, repeats: int) -> tuple[float, float]:
    """Median wall time and median process CPU time (all threads) in ms."""
    for _ in range(warmup):
        fn()
    sync(device)
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        sync(device)
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def max_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if platform.system() != "Darwin" else rss / 2**20


def bench_one(verts, faces, size: int, batch: int, device, warmup: int, repeats: int) -> dict:
    B = batch
    K = intrinsics_from_fov(20.0, size, size, device=device)
    eye = torch.tensor([[0.0, 0.0, 0.6]], device=device).expand(B, 3)
    R, t = look_at(
        eye, torch.zeros(B, 3, device=device), torch.tensor([[0.0, 1.0, 0.0]], device=device).expand(B, 3)
    )
    cams = Cameras(K, R, t, (size, size))
    renderer = MeshRenderer(sigma=0.5)
    v = verts[None].repeat(B, 1, 1).contiguous()
    colors = torch.rand(B, verts.shape[0], 3, device=device)
    sh = sh_ambient(1.0, batch_size=B).to(device)
    vs = cams.screen(v)

    def raster():
        with torch.no_grad():
            rasterize(vs, faces, (size, size))

    def forward():
        with torch.no_grad():
            renderer(v, faces, cams, vertex_colors=colors, sh=sh, soft_alpha=True)

    v_req = v.clone().requires_grad_()
    c_req = colors.clone().requires_grad_()

    def forward_backward():
        out = renderer(v_req, faces, cams, vertex_colors=c_req, sh=sh, soft_alpha=True)
        (out["rgb"].mean() + out["alpha"].mean()).backward()
        v_req.grad = None
        c_req.grad = None

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    res: dict = {"size": size, "batch": batch}
    for name, fn in (("raster", raster), ("forward", forward), ("fwd_bwd", forward_backward)):
        res[f"{name}_ms"], res[f"{name}_cpu_ms"] = timed(fn, device, warmup, repeats)
    with torch.no_grad():
        out = renderer(v, faces, cams, vertex_colors=colors, sh=sh)
    res["coverage"] = float(out["mask"].float().mean())
    if device.type == "cuda":
        res["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        res["max_rss_mb"] = max_rss_mb()
    return res


def markdown(rows: list[dict], device: str) -> str:
    mem_key = "peak_mem_mb" if device.startswith("cuda") else "max_rss_mb"
    mem_name = "peak CUDA mem (MB)" if device.startswith("cuda") else "process max RSS (MB)"
    lines = [
        "| size | batch | rasterize (ms) | forward (ms) | forward+backward (ms) | fwd+bwd CPU time (ms) "
        f"| {mem_name} |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['batch']} | {r['raster_ms']:.1f} | {r['forward_ms']:.1f} | "
            f"{r['fwd_bwd_ms']:.1f} | {r['fwd_bwd_cpu_ms']:.1f} | {r[mem_key]:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--out", type=Path, default=None, help="default: bench/results/render_<device>.json")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda requested but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    out_path = args.out or ROOT / "bench" / "results" / f"render_{device.type}.json"

    torch.manual_seed(0)
    verts, faces = load_ict(device)
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            r = bench_one(verts, faces, size, batch, device, args.warmup, args.repeats)
            rows.append(r)
            print(
                f"size {size:4d} batch {batch:2d}: raster {r['raster_ms']:8.1f} ms,"
                f" forward {r['forward_ms']:8.1f} ms, fwd+bwd {r['fwd_bwd_ms']:8.1f} ms",
                flush=True,
            )
    if device.type == "cuda":
        dev_name = torch.cuda.get_device_name(device)
    else:
        dev_name = f"{platform.processor() or platform.machine()} ({os.cpu_count()} cpus)"
    payload = {
        "benchmark": "MeshRenderer on ICT-FaceKit light (full mesh)",
        "mesh": {"vertices": int(verts.shape[0]), "triangles": int(faces.shape[0])},
        "camera": {"eye": [0.0, 0.0, 0.6], "fov_deg": 20.0},
        "loss": "rgb.mean() + alpha.mean() (vertex colours, SH ambient shading, soft alpha sigma=0.5)",
        "device": args.device,
        "device_name": dev_name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "results": rows,
    }
    write_json(out_path, payload)
    print()
    print(markdown(rows, args.device))
    print(f"\nwrote {out_path}")


if __name__ == "__main__":
    main()
