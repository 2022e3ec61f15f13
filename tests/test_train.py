"""train.py end to end on the tiny synthetic subject: a short fit + resume, wandb offline, evaluation.

Every experiment's fast_dev_run: tests/test_model_headmodel.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from src.cli.train import train
from tests.helpers import CONF_DIR, TINY_GENERATOR, compose_train

pytestmark = pytest.mark.integration  # trains and resumes through train.py

CONF_ROOT = Path(CONF_DIR).parent


def _overrides(tiny_subject, tmp_path, extra):
    data_dir = tmp_path / "data"
    dst = data_dir / "synthetic" / "seed0_48px_12f"
    shutil.copytree(tiny_subject, dst)
    gen = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    return [
        f"paths.data_dir={data_dir}", *gen, "data.val_frames=2", "data.test_frames=2", "data.batch_size=2",
        "metrics.fid=false", *extra,
    ]  # fmt: skip


def test_fit_improves_and_resumes(tiny_subject, tmp_path):
    extra = [
        "experiment=baseline_synthetic",
        "logger=csv",
        "trainer.max_epochs=4",
        "callbacks.rich_progress_bar=null",
    ]
    cfg = compose_train(_overrides(tiny_subject, tmp_path, extra), output_dir=tmp_path)
    metrics = train(cfg)
    assert metrics["val/psnr"] > 12, metrics
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.exists()
    assert list((tmp_path / "images").glob("val_epoch_*.png"))
    import imageio.v3 as iio

    video = iio.imread(tmp_path / "videos" / "val.mp4")  # held-out video written at the end of fit
    assert video.shape[0] == 2 and video.shape[2] == 2 * 48
    # resume for two more epochs from last.ckpt
    cfg2 = compose_train(
        _overrides(tiny_subject, tmp_path / "r", [*extra, "trainer.max_epochs=6", f"ckpt_path={last}"]),
        output_dir=tmp_path / "r",
    )
    metrics2 = train(cfg2)
    assert metrics2["val/psnr"] >= metrics["val/psnr"] - 0.5


def test_wandb_offline_without_key(tiny_subject, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = compose_train(
        _overrides(tiny_subject, tmp_path, ["experiment=baseline_synthetic", "debug=fdr", "logger=wandb"]),
        output_dir=tmp_path,
    )
    train(cfg)
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_evaluate_checkpoint(tiny_subject, tmp_path):
    """A trained checkpoint is scored on its held-out frames by evaluate.py (all metrics, real weights)."""
    from src.cli.evaluate import run

    cfg = compose_train(
        _overrides(
            tiny_subject, tmp_path, ["experiment=baseline_synthetic", "logger=csv", "trainer.max_epochs=1"]
        ),
        output_dir=tmp_path,
    )
    metrics = train(cfg)
    ecfg = compose_train(
        [
            f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}",
            f"out_dir={tmp_path / 'eval'}",
            "metrics.fid=true",
        ],
        output_dir=tmp_path / "eval",
        config_name="evaluate",
    )
    results = run(ecfg)
    assert sorted(p.name for p in (tmp_path / "eval" / "pred").glob("*.png")) == ["000010.png", "000011.png"]
    for key in ("psnr", "ssim", "lpips", "fid", "psnr_masked", "lpips_masked"):
        assert key in results, key
    for key in ("psnr", "ssim", "lpips", "psnr_masked"):  # the run's test loop scored the same weights
        assert abs(results[key] - metrics[f"test/{key}"]) < 1e-3, key
    assert (tmp_path / "eval" / "metrics.md").exists() and (tmp_path / "eval" / "metrics.json").exists()


@pytest.mark.slow
def test_ddp_two_cpu_processes(tiny_subject, tmp_path):
    """`python train.py trainer=ddp` with two gloo processes on CPU (launches real subprocesses)."""
    import subprocess
    import sys

    overrides = _overrides(tiny_subject, tmp_path, ["experiment=baseline_synthetic", "debug=fdr"])
    cmd = [
        sys.executable, "train.py", *overrides, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.detect_anomaly=false", f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=str(CONF_ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test/psnr" in proc.stdout + proc.stderr
