"""dlib face descriptor benchmark: our torch network vs dlib itself, per face.

Run from the project root: ``python -m bench.bench_dlib_face [--device cpu|cuda] [--batches 1 8]``.
On dlib chips of the real faces in ``../shared/assets/videos/single_face.jpg`` it times:

- ``torch``: :class:`src.pretrained.dlib_face.DlibFaceNet` forward, per face, at each batch size;
- ``torch+align``: the differentiable alignment (:func:`align_face_chips`) plus the network, per face;
- ``torch fwd+bwd``: L_cos's cost: alignment + network forward and backward to the image, per face;
- ``dlib``: ``dlib.face_recognition_model_v1.compute_face_descriptor`` on the same chip (CPU, one face).

Also reports the largest |difference| between our descriptors and dlib's on those chips. Prints a
markdown table and writes ``bench/results/dlib_face_<device>.json``.
"""

from __future__ import annotations

import argparse
import platform
from datetime import datetime
from pathlib import Path

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import numpy as np
import torch

from bench.bench_render import max_rss_mb, timed
from src.pretrained.dlib_face import DlibFaceNet, find_model_file
from src.pretrained.face_align import align_face_chips
from src.utils.io import write_json

OUT = Path(__file__).resolve().parent / "results"
IMAGE = Path(__file__).resolve().parents[2] / "shared" / "assets" / "videos" / "single_face.jpg"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    import dlib
    import imageio.v3 as iio

    device = torch.device(args.device)
    models = find_model_file().parent
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
    rec = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    img = np.ascontiguousarray(iio.imread(IMAGE)[..., :3])
    shape = sp(img, det(img, 1)[0])
    chip = dlib.get_face_chip(img, shape, 150, 0.25)
    net = DlibFaceNet.from_file().to(device).eval()
    x_chip = torch.from_numpy(chip).permute(2, 0, 1).float()[None].to(device) / 255
    with torch.no_grad():
        ours = net(x_chip)[0].double().cpu().numpy()
    max_diff = float(np.abs(ours - np.array(rec.compute_face_descriptor(chip))).max())
    image = torch.from_numpy(img).permute(2, 0, 1).float()[None].to(device) / 255
    lm = torch.tensor([[q.x, q.y] for q in shape.parts()], dtype=torch.float32)[None]
    rows = []
    for b in args.batches:
        chips, imgs, lms = x_chip.expand(b, -1, -1, -1), image.expand(b, -1, -1, -1), lm.expand(b, -1, -1)

        def fwd_bwd(imgs=imgs, lms=lms):
            x = imgs.clone().requires_grad_(True)
            net(align_face_chips(x, lms)).sum().backward()

        with torch.no_grad():
            t_net, c_net = timed(lambda chips=chips: net(chips), device, 1, args.repeats)
            aligned = lambda imgs=imgs, lms=lms: net(align_face_chips(imgs, lms))  # noqa: E731
            t_align, c_align = timed(aligned, device, 1, args.repeats)
        t_bwd, c_bwd = timed(fwd_bwd, device, 1, args.repeats)
        rows.append({"batch": b, "torch_ms_per_face": t_net / b, "torch_align_ms_per_face": t_align / b,
                     "torch_fwd_bwd_ms_per_face": t_bwd / b, "cpu_time_ms_per_face": c_net / b,
                     "cpu_time_align_ms_per_face": c_align / b,
                     "cpu_time_fwd_bwd_ms_per_face": c_bwd / b})  # fmt: skip
    t_dlib, c_dlib = timed(lambda: rec.compute_face_descriptor(chip), torch.device("cpu"), 1, args.repeats)
    print(f"max |ours - dlib| on the chip: {max_diff:.2e}; dlib: {t_dlib:.1f} ms/face (CPU {c_dlib:.1f})")
    print("wall ms per face (process CPU time, all threads, in brackets)")
    print("| batch | torch | torch+align | torch fwd+bwd |\n|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['batch']} | {r['torch_ms_per_face']:.1f} ({r['cpu_time_ms_per_face']:.1f}) | "
              f"{r['torch_align_ms_per_face']:.1f} ({r['cpu_time_align_ms_per_face']:.1f}) | "
              f"{r['torch_fwd_bwd_ms_per_face']:.1f} ({r['cpu_time_fwd_bwd_ms_per_face']:.1f}) |"
              )  # fmt: skip
    payload = {
        "date": datetime.now().isoformat(timespec="seconds"), "device": str(device),
        "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "max_abs_diff_vs_dlib": max_diff, "dlib_ms_per_face": t_dlib, "dlib_cpu_time_ms_per_face": c_dlib,
        "rows": rows,
        "max_rss_mb": max_rss_mb(),
    }  # fmt: skip
    write_json(OUT / f"dlib_face_{device.type}.json", payload)


if __name__ == "__main__":
    main()
