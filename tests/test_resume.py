"""Resume after SIGKILL: ``ckpt_path=last`` continues the same folder and wandb run, and the resumed run ends
with the same test metrics as an uninterrupted one (data order and random state are restored per epoch)."""

from __future__ import annotations

import json
import signal

import pytest

from tests.workflow_helpers import offline_env, read_wandb_run, run_train, tiny_overrides

pytestmark = pytest.mark.integration  # kills and resumes a training process

KILL = [
    "+callbacks.kill._target_=tests.kill_callback.KillAt",
    "+callbacks.kill.epoch=2",
    "+callbacks.kill.batch=2",
]


def test_kill9_mid_epoch_resume_matches_uninterrupted(tiny_subject, tmp_path):
    env = offline_env(tmp_path)
    common = ["trainer.max_epochs=3", "seed=7", "metrics.lpips=false", "metrics.fid=false"]
    full = run_train(
        tiny_overrides(tiny_subject, tmp_path, [*common, "logger=csv", f"hydra.run.dir={tmp_path / 'full'}"]),
        env,
    )
    assert full.returncode == 0, full.stderr[-3000:]
    run_dir = tmp_path / "killed"
    args = tiny_overrides(tiny_subject, tmp_path, [*common, "logger=wandb", f"hydra.run.dir={run_dir}"])
    killed = run_train([*args, *KILL], env)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-3000:])
    assert "KillAt: SIGKILL at epoch 2" in killed.stdout
    assert not (run_dir / "metrics.json").exists()
    run_id = (run_dir / "checkpoints" / "wandb_id.txt").read_text().strip()

    resumed = run_train([*args, "ckpt_path=last"], env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert "resume: from" in log and "last.ckpt" in log
    assert (run_dir / "checkpoints" / "wandb_id.txt").read_text().strip() == run_id
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((run_dir / "metrics.json").read_text())
    print("uninterrupted:", {k: a[k] for k in ("val/psnr", "test/psnr", "test/ssim")})
    print("killed + resumed:", {k: b[k] for k in ("val/psnr", "test/psnr", "test/ssim")})
    assert abs(a["test/psnr"] - b["test/psnr"]) < 0.1, (a["test/psnr"], b["test/psnr"])
    assert abs(a["val/psnr"] - b["val/psnr"]) < 0.1

    # the resumed process logged into the killed run (a SIGKILLed offline run may not have flushed its
    # own run record, so its file can read back without an id)
    runs = [read_wandb_run(f) for f in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))]
    assert len(runs) == 2 and runs[-1]["run_id"] == run_id and runs[0]["run_id"] in (run_id, None)
    assert "test/psnr" in runs[-1]["history_keys"] | runs[-1]["summary_keys"]


def test_resolve_resume_finds_the_run(tmp_path, monkeypatch):
    """ckpt_path=last: own folder first, else the newest run of the task (whose folder the job takes over);
    a SLURM restart resumes its own last.ckpt; nothing found starts a new run."""
    import os

    from omegaconf import OmegaConf

    from src.utils.resume import resolve_resume

    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    runs = tmp_path / "logs" / "train" / "runs"
    for i, name in enumerate(("old", "new")):
        (runs / name / "checkpoints").mkdir(parents=True)
        (runs / name / "checkpoints" / "last.ckpt").write_text(name)
        os.utime(runs / name / "checkpoints" / "last.ckpt", (1000 + i, 1000 + i))

    def cfg(out, **kw):
        return OmegaConf.create({"paths": {"output_dir": str(out), "log_dir": str(tmp_path / "logs")},
                                 "task_name": "train", "ckpt_path": None, "resume": False, **kw})  # fmt: skip

    c = cfg(tmp_path / "fresh", ckpt_path="last")
    assert resolve_resume(c) == str(runs / "new" / "checkpoints" / "last.ckpt")
    assert c.paths.output_dir == str(runs / "new")
    c = cfg(runs / "old", resume=True)
    assert resolve_resume(c) == str(runs / "old" / "checkpoints" / "last.ckpt")
    assert resolve_resume(cfg(tmp_path / "x", ckpt_path="/some/file.ckpt")) == "/some/file.ckpt"
    assert resolve_resume(cfg(tmp_path / "x")) is None
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert resolve_resume(cfg(runs / "old")) == str(runs / "old" / "checkpoints" / "last.ckpt")
    assert resolve_resume(cfg(tmp_path / "none")) is None
    c = cfg(
        tmp_path / "empty", ckpt_path="last", paths={"output_dir": str(tmp_path / "e"), "log_dir": "/nope"}
    )
    assert resolve_resume(c) is None
