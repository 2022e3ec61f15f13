"""SLURM through hydra-submitit-launcher on a real (one-node) cluster: `make test-slurm` starts one with
scripts/slurm_local.sh. A two-job CPU sweep finishes with checkpoints and metrics; a job requeued while it
runs (`scontrol requeue`) resumes from its last.ckpt instead of starting again."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from tests.workflow_helpers import REPO, offline_env, tiny_overrides

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def _cluster_up() -> bool:
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mix", "alloc"))


@pytest.fixture(autouse=True)
def _need_cluster():
    if not _cluster_up():
        pytest.skip("no SLURM cluster answering: run `bash scripts/slurm_local.sh` (or `make test-slurm`)")


def _sacct(job_ids: list[str]) -> str:
    fmt = "JobID,JobName%20,Partition,AllocCPUS,State,ExitCode,Elapsed,Start,End"
    return subprocess.run(["sacct", "-D", "-X", "-P", "-j", ",".join(job_ids), f"--format={fmt}"],
                          capture_output=True, text=True).stdout  # fmt: skip


def _launcher(sweep) -> list[str]:
    return ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=30",
            "+hydra.launcher.additional_parameters.mem=1500M", f"hydra.sweep.dir={sweep}"]  # fmt: skip


def test_two_job_sweep_on_slurm(tiny_subject, tmp_path):
    sweep = tmp_path / "sweep"
    extra = ["logger=csv", "trainer.max_epochs=2", "metrics.lpips=false", "metrics.fid=false", "seed=1,2"]
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        *tiny_overrides(tiny_subject, tmp_path, extra),
        *_launcher(sweep),
    ]
    proc = subprocess.run(cmd, cwd=str(REPO), env=offline_env(tmp_path), capture_output=True, text=True,
                          timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    job_ids = sorted(p.name for p in (sweep / ".submitit").iterdir() if p.is_dir())
    print(_sacct(job_ids))
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").exists(), job
        assert "test/psnr" in (sweep / job / "metrics.json").read_text()


def test_requeued_job_resumes(tiny_subject, tmp_path):
    sweep = tmp_path / "sweep"
    slow_epochs = ["+callbacks.kill._target_=tests.kill_callback.KillAt", "+callbacks.kill.epoch=0",
                   "+callbacks.kill.batch=0", "+callbacks.kill.signum=mark",
                   "+callbacks.kill.delay=1.5"]  # fmt: skip
    extra = ["logger=wandb", "trainer.max_epochs=4", "metrics.lpips=false", "metrics.fid=false", "seed=3"]
    cmd = [sys.executable, "train.py", "-m", *tiny_overrides(tiny_subject, tmp_path, extra), *slow_epochs,
           *_launcher(sweep)]  # fmt: skip
    launcher = subprocess.Popen(cmd, cwd=str(REPO), env=offline_env(tmp_path), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
    last = sweep / "0" / "checkpoints" / "last.ckpt"
    end = time.time() + 900
    while not last.exists():
        assert launcher.poll() is None and time.time() < end, "no last.ckpt before the job ended"
        time.sleep(1)
    (job_id,) = [p.name for p in (sweep / ".submitit").iterdir() if p.is_dir()]
    run_id = (sweep / "0" / "checkpoints" / "wandb_id.txt").read_text().strip()
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    out, _ = launcher.communicate(timeout=1800)
    print(_sacct([job_id]))
    assert launcher.returncode == 0, out[-4000:]
    log = (sweep / "0" / "train.log").read_text()
    assert "resume: SLURM restart 1 of this job; from" in log, log[-3000:]
    assert "Restored all states from the checkpoint" in log or "resume: from" in log
    assert (sweep / "0" / "checkpoints" / "wandb_id.txt").read_text().strip() == run_id
    assert "test/psnr" in (sweep / "0" / "metrics.json").read_text()
