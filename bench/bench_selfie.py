"""Image-avatar (SelfieAvatar) benchmark: generator frames per second and training-step time.

Run from the project root: ``python -m bench.bench_selfie [--sizes 128 256 512] [--device cpu|cuda]``.
Builds the avatar from the real configs (experiment=selfie_synthetic, generator size set per row) with
random per-frame parameters and times:

- ``gen``: the averaged generator alone on cached conditioning images (batch 1): the inference network;
- ``frame``: a whole frame through ``render_params`` (head-model render + UV image + generator, batch 1);
- ``train``: one training step (discriminator step + generator step with every loss term of the
  experiment, batch ``--batch``), only for sizes in ``--train-sizes``.

Prints a markdown table and writes ``bench/results/selfie_<device>.json``.
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


def build(size: int, n_frames: int, device: torch.device, overrides: list[str]):
    """A SelfieAvatar at ``size`` px with random expressions and a frontal camera."""
    cfg = compose_train(
        ["experiment=selfie_synthetic", "logger=csv", f"model.generator.size={size}", *overrides],
        output_dir=Path("/tmp/bench_selfie"),
    )
    model = hydra.utils.instantiate(cfg.model)
    hm = model.headmodel
    g = torch.Generator().manual_seed(0)
    R, t = look_at(torch.tensor([[0.0, 0.0, 0.72]]), torch.zeros(1, 3))
    params = {
        "identity": torch.zeros(hm.n_identity),
        "expression": 0.3 * torch.rand(n_frames, hm.n_expression, generator=g),
        "rotation": 0.2 * torch.randn(n_frames, 3, generator=g),
        "translation": torch.zeros(n_frames, 3),
        "joint_pose": torch.zeros(n_frames, 0),
        "K": intrinsics_from_fov(24.0, size, size)[0], "R": R[0], "t": t[0],
    }  # fmt: skip
    splits = {"train": range(n_frames), "val": [], "test": []}
    model.attach(SubjectData(params=params, image_size=(size, size), splits=splits))
    return model.to(device)


def bench_size(size: int, batch: int, device: torch.device, warmup: int, repeats: int, train: bool,
               overrides: list[str]) -> dict:  # fmt: skip
    model = build(size, max(batch, 8), device, overrides)
    model.eval()
    idx = torch.arange(batch, device=device)
    cond1 = model.conditioning(idx[:1])
    f = model.frames
    cams1 = f.cameras_for(idx[:1], (size, size))

    def gen_one():
        with torch.no_grad():
            model.generator_ema(cond1, randomize_noise=False)

    def frame_one():
        model.render_params(f.identity, f.expression[:1], f.rotation[:1], f.translation[:1], cams1)

    gen_ms, _ = timed(gen_one, device, warmup, repeats)
    frame_ms, _ = timed(frame_one, device, warmup, repeats)
    res = {"size": size, "gen_ms": gen_ms, "gen_fps": 1000.0 / gen_ms, "frame_ms": frame_ms,
           "frame_fps": 1000.0 / frame_ms,
           "gen_params": sum(p.numel() for p in model.generator.parameters())}  # fmt: skip
    if train:
        model.train()
        opt_g = torch.optim.Adam(model.generator.parameters(), lr=1e-4, betas=(0.0, 0.99))
        opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=1e-4, betas=(0.0, 0.99))
        model.optimizers = lambda: [opt_g, opt_d]
        model.manual_backward = lambda loss: loss.backward()
        model.log = model.log_dict = lambda *a, **k: None
        with torch.no_grad():
            target = model(idx)[Out.IMAGE].clamp(0, 1).flip(-1)
        cond = model.conditioning(idx)
        batch_data = {Batch.INDEX: idx, Batch.IMAGE: target, Batch.MASK: cond[Out.CONDITION_MASK]}
        res["train_batch"] = batch
        res["train_step_ms"], _ = timed(lambda: model.training_step(batch_data, 0), device, warmup, repeats)
        for term in ("l1", "mrf", "adv"):
            w = model.weights.get(term, 0)
            if w > 0 or term == "l1":

                def one(term=term):
                    out = model.generator(cond)
                    model.weights, saved = {"l1": 0.0, "mask": 0.0, **{term: 1.0}}, model.weights
                    try:
                        total, _ = model.generator_loss(batch_data, out, cond, adversarial=term == "adv")
                    finally:
                        model.weights = saved
                    total.backward()

                res[f"g_step_{term}_only_ms"], _ = timed(one, device, warmup, repeats)
    if device.type == "cuda":
        res["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    else:
        res["max_rss_mb"] = max_rss_mb()
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--train-sizes", type=int, nargs="*", default=[128])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides (e.g. a bigger model)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    rows = [
        bench_size(s, args.batch, device, args.warmup, args.repeats, s in args.train_sizes, args.override)
        for s in args.sizes
    ]
    mem = "peak_mem_mb" if device.type == "cuda" else "max_rss_mb"
    print(
        "| size | generator (ms) | generator fps | frame incl. render (ms) | frame fps | train step (ms) | "
        f"{mem} |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        step = f"{r['train_step_ms']:.0f} (batch {r['train_batch']})" if "train_step_ms" in r else "-"
        print(f"| {r['size']} | {r['gen_ms']:.1f} | {r['gen_fps']:.1f} | {r['frame_ms']:.1f} | "
              f"{r['frame_fps']:.1f} | {step} | {r[mem]:.0f} |")  # fmt: skip
    payload = {
        "benchmark": "SelfieAvatar (selfie_synthetic config, generator size per row): EMA generator batch 1; "
        "render_params batch 1; training step (D + G, all configured terms)",
        "overrides": args.override, "device": args.device, "torch": torch.__version__,
        "machine": f"{platform.machine()} ({torch.get_num_threads()} threads)",
        "timestamp": datetime.now().isoformat(timespec="seconds"), "results": rows,
    }  # fmt: skip
    out = args.out or OUT / f"selfie_{device.type}.json"
    write_json(out, payload)
    print(f"written {out}")


if __name__ == "__main__":
    main()
