"""Task wrapper: one wandb run per multirun job (read back from the offline run files with wandb's own
reader), loggers finished on failure, readable run names, every metric and panel on the dashboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.utils.task import task_wrapper
from src.utils.wandb_run import job_name, swept_keys
from tests.workflow_helpers import offline_env, read_wandb_run, run_train, tiny_overrides

pytestmark = pytest.mark.integration  # training runs logged to wandb offline

EXPECTED_KEYS = (
    "train/loss", "train/rgb_l1", "train/silhouette",
    "val/psnr", "val/ssim", "val/lpips", "val/psnr_masked", "val/lpips_masked",
    "test/psnr", "test/ssim", "test/lpips", "test/psnr_masked",
)  # fmt: skip
FID_KEYS = ("val/fid", "val/fid_masked", "test/fid", "test/fid_masked")
PANELS = ("val/images", "test/images", "val/video")


@pytest.mark.parametrize("fid", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_multirun_two_wandb_runs(tiny_subject, tmp_path, fid):
    """Two jobs of one multirun, wandb offline: two run ids, one group, every metric in each run's file.

    (FID on CPU costs minutes here, so the FID keys are checked by the slow variant.)
    """
    sweep = tmp_path / "sweep"
    extra = [
        "logger=wandb", "trainer.max_epochs=1", "trainer.log_every_n_steps=1", "seed=1,2",
        f"metrics.fid={str(fid).lower()}", "callbacks.fid_schedule.val_every_n_epochs=1",
        f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    proc = run_train(["-m", *tiny_overrides(tiny_subject, tmp_path, extra)], offline_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = []
    for job in (0, 1):
        files = list((sweep / str(job) / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(files) == 1, files
        run = read_wandb_run(files[0])
        assert run["run_id"] == (sweep / str(job) / "checkpoints" / "wandb_id.txt").read_text().strip()
        logged = run["history_keys"] | run["summary_keys"]
        missing = [k for k in EXPECTED_KEYS + (FID_KEYS if fid else ()) if k not in logged]
        missing += [k for k in PANELS if not any(x.startswith(k + "/") for x in logged)]
        assert not missing, (job, missing, sorted(logged))
        runs.append(run)
    assert runs[0]["run_id"] != runs[1]["run_id"]
    assert runs[0]["group"] == runs[1]["group"] == "train/sweep"
    assert runs[0]["name"] == "experiment=baseline_synthetic,seed=1", runs[0]["name"]
    assert runs[1]["name"] == "experiment=baseline_synthetic,seed=2"


def test_task_wrapper_finishes_wandb_on_failure(tmp_path, monkeypatch):
    """A failing task is re-raised and its open wandb run is finished (exit code 1)."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")

    @task_wrapper
    def failing(cfg):
        wandb.init(dir=str(tmp_path), project="t")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        failing(None)
    assert wandb.run is None
    assert list(Path(tmp_path, "wandb").glob("offline-run-*"))


def test_job_name_and_swept_keys():
    assert swept_keys(["-m", "seed=1,2", "model.lr=0.1", "x=[1,2]", "y=range(1,3)"]) == {"seed", "y"}
    overrides = ["paths.data_dir=/a/b", "seed=1", "model.lr=0.1", "experiment=nha", "logger=wandb"]
    assert job_name(overrides, "f") == "seed=1,model.lr=0.1,experiment=nha"
    assert job_name(overrides, "f", {"seed"}) == "seed=1,experiment=nha"
    assert job_name(["paths.x=/y"], "run_dir") == "run_dir"
