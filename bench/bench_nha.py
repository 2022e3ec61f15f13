"""Mesh-avatar (NHA) benchmark: training step (forward + backward) and render time per frame.

Run from the project root: ``python -m bench.bench_nha [--sizes 128 256 512] [--device cpu|cuda]
[--headmodel ict_subdivided]``.
Builds the avatar from the real configs (experiment=nha_synthetic) with synthetic per-frame parameters,
times the joint-stage loss (every term of the joint stage) and inference renders, prints a markdown
table and writes ``bench/results/nha_<device>.json`` (``nha_<device>_<headmodel>.json`` for another
head model).
"""

from __future__ import annotations

import argparse
import platform
from datetime import datetime
from pathlib import Path

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import hydra
import torch

from bench.bench_render import max_rss_mb, timed
from src.core.outputs import Batch, Out
from src.core.subject import SubjectData
from src.render import intrinsics_from_fov, look_at
from src.utils.io import write_json
from tests.helpers import compose_train

OUT = Path(__file__).resolve().parent / "results"


def build(size: int, n_frames: int, device: torch.device, headmodel: str = "ict"):
    """An NHAAvatar (on ``conf/headmodel/<headmodel>.yaml``) with random expressions and a frontal camera."""
    overrides = ["experiment=nha_synthetic", "logger=csv", f"headmodel={headmodel}"]
    cfg = compose_train(overrides, output_dir=Path("/tmp/bench_nha"))
    model = hydra.utils.instantiate(cfg.model)
    hm = model.net.headmodel
    g = torch.Generator().manual_seed(0)
    R, t = look_at(torch.tensor([[0.0, 0.0, 0.72]]), torch.zeros(1, 3))
    params = {
        "identity": torch.zeros(hm.n_identity),
        "expression": 0.3 * torch.rand(n_frames, hm.n_expression, generator=g),
        "rotation": 0.2 * torch.randn(n_frames, 3, generator=g),
        "translation": torch.zeros(n_frames, 3),
        "joint_pose": torch.zeros(n_frames, 0),
        "K": intrinsics_from_fov(24.0, size, size)[0],
        "R": R[0],
        "t": t[0],
    }
    splits = {"train": range(n_frames), "val": [], "test": []}
    model.attach(SubjectData(params=params, image_size=(size, size), splits=splits))
    return model.to(device)


def bench_size(
    size: int, batch: int, device: torch.device, warmup: int, repeats: int, headmodel: str = "ict"
) -> dict:
    model = build(size, max(batch, 8), device, headmodel)
    idx = torch.arange(batch, device=device)
    with torch.no_grad():
        ref = model(idx)
    batch_data = {
        Batch.INDEX: idx,
        Batch.IMAGE: ref[Out.IMAGE].detach().flip(-1),
        Batch.MASK: ref[Out.COVERAGE].detach(),
        Batch.NORMALS: ref[Out.NORMALS].detach(),
        Batch.SEGMENTATION: torch.ones(batch, size, size, dtype=torch.long, device=device),
        Batch.LANDMARKS68: torch.full((batch, 68, 2), size / 2.0, device=device),
    }
    weights = {**model.loss_fn.base_weights, **model.stages[-1].loss}

    def train_step():
        out = model(idx, soft_alpha=model.loss_fn.needs_soft_alpha(weights))
        total, _ = model.loss_fn(batch_data, out, model.frame_state(idx), weights)
        model.zero_grad(set_to_none=True)
        total.backward()

    def render_one():
        with torch.no_grad():
            model(idx[:1])

    step_ms, step_cpu = timed(train_step, device, warmup, repeats)
    render_ms, _ = timed(render_one, device, warmup, repeats)
    res = {"size": size, "batch": batch, "train_step_ms": step_ms, "train_step_cpu_ms": step_cpu,
           "render_ms_per_frame": render_ms}  # fmt: skip
    if device.type == "cuda":
        res["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    else:
        res["max_rss_mb"] = max_rss_mb()
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--headmodel", default="ict", help="conf/headmodel option, e.g. ict_subdivided")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    rows = [bench_size(s, args.batch, device, args.warmup, args.repeats, args.headmodel) for s in args.sizes]
    mem = "peak_mem_mb" if device.type == "cuda" else "max_rss_mb"
    print(f"| size | batch | train step (ms) | render (ms/frame) | {mem} |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [
            r["size"],
            r["batch"],
            f"{r['train_step_ms']:.0f}",
            f"{r['render_ms_per_frame']:.0f}",
            f"{r[mem]:.0f}",
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    payload = {
        "benchmark": "NHAAvatar (nha_synthetic): joint-stage loss forward+backward; inference render",
        "headmodel": args.headmodel,
        "device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} ({torch.get_num_threads()} threads)",
        "timestamp": datetime.now().isoformat(timespec="seconds"), "results": rows,
    }  # fmt: skip
    suffix = "" if args.headmodel == "ict" else f"_{args.headmodel}"
    out = args.out or OUT / f"nha_{device.type}{suffix}.json"
    write_json(out, payload)
    print(f"written {out}")


if __name__ == "__main__":
    main()
