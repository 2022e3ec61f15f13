"""A tiny trained avatar checkpoint for the reenactment and export tests (trained once per session)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.helpers import TINY_GENERATOR, compose_train


def tiny_avatar_checkpoint(tiny_subject: Path, base: Path) -> Path:
    """Train the vertex-colour baseline for one epoch on the tiny subject; reuse it when already there.

    Args:
        tiny_subject: the session's tiny synthetic subject (conftest fixture).
        base: a session-wide folder (``tmp_path_factory.getbasetemp()``) shared by the test modules.

    Returns:
        Path of ``last.ckpt``.
    """
    from src.cli.train import train

    run = base / "tiny_avatar"
    ckpt = run / "checkpoints" / "last.ckpt"
    if ckpt.is_file():
        return ckpt
    data_dir = run / "data"
    shutil.copytree(tiny_subject, data_dir / "synthetic" / "seed0_48px_12f", dirs_exist_ok=True)
    overrides = [
        f"paths.data_dir={data_dir}", *(f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()),
        "data.val_frames=2", "data.test_frames=2", "data.batch_size=4", "experiment=baseline_synthetic",
        "logger=csv", "trainer.max_epochs=1", "test=false", "metrics.fid=false", "metrics.lpips=false",
        "callbacks.rich_progress_bar=null", "callbacks.image_grid=null", "+trainer.enable_progress_bar=false",
    ]  # fmt: skip
    train(compose_train(overrides, output_dir=run))
    assert ckpt.is_file(), f"training did not write {ckpt}"
    return ckpt
