"""Avatar studio worker: a killed worker's job is resumed (or failed with the reason) by the next worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.app_fixtures import TINY, VIDEOS, job_of, last_job, login, make_app, upload

pytestmark = pytest.mark.integration  # the studio's worker processes, killed and resumed

ROOT = Path(__file__).resolve().parents[1]


def start_worker(data_dir: Path, log: Path, command: tuple[str, ...] = ("worker",)) -> subprocess.Popen:
    """``python -m src.app worker`` (or ``command``) on the test app's folder (the test app's settings)."""
    env = {
        **os.environ,
        "AVATAR_APP_DATA_DIR": str(data_dir),
        "AVATAR_APP_EXTRA_OVERRIDES": json.dumps(TINY),
        "AVATAR_APP_STALE_S": "2",
        "AVATAR_APP_HEARTBEAT_S": "0.5",
        "AVATAR_APP_WORKER_POLL_S": "0.2",
        "AVATAR_APP_ORBIT_FRAMES": "4",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "src.app", *command],
        cwd=ROOT,
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )


def wait_for(pred, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _kill_worker_mid_step(app, tmp_path, job_id: str, step: str) -> None:
    w1 = start_worker(tmp_path, tmp_path / "w1.log")
    try:
        wait_for(lambda: (j := job_of(app, job_id)).progress_dict.get("step") == step and j.pid, 600, step)
        time.sleep(1.0)
    finally:
        w1.send_signal(signal.SIGKILL)  # no clean-up at all: the entry point keeps running, orphaned
        w1.wait()
    assert job_of(app, job_id).status == "running"  # what a crash leaves behind


def test_worker_killed_during_preprocessing_resumes(tmp_path):
    app = make_app(tmp_path)
    r = upload(login(app, "alice"), VIDEOS / "single_face.mp4")
    assert r.status_code == 302
    job_id = last_job(app, "preprocess").id
    _kill_worker_mid_step(app, tmp_path, job_id, "tracking")
    w2 = start_worker(tmp_path, tmp_path / "w2.log")
    try:
        job = wait_for(lambda: (j := job_of(app, job_id)).finished and j, 600, "the job to finish")
    finally:
        w2.terminate()
        w2.wait(60)
    assert job.status == "done", (job.error, job.log_tail)
    assert job.attempts == 2 and "interrupted by a server restart" in job.note
    log = (tmp_path / "users" / job.user_id / "jobs" / job.id / "job.log").read_text()
    assert log.count("--- step preprocess") == 1  # the finished step was not run again
    assert log.count("--- step tracking") == 2


def _fake_running(app, kind: str, ckpt: bool, attempts: int = 1):
    """A job row left ``running`` by a worker that died long ago (no process behind it)."""
    from src.app import jobs
    from src.app.extensions import db
    from src.app.models import Job, JSONText, User

    with app.app_context():
        user = db.session.scalars(db.select(User)).first()
        params = {
            "family": "mesh",
            "quality": "tiny",
            "resolution": 64,
            "n_identity": 10,
            "video": "v.mp4",
            "subject_src": "s",
        }
        job = jobs.enqueue(user.id, kind, params)
        job.status, job.attempts, job.heartbeat_at, job.pid = "running", attempts, None, 999_999_999
        job.progress = JSONText.dump({"step": "train", "steps_done": 1})
        if ckpt:
            path = Path(app.config["DATA_DIR"]) / "users" / user.id / "jobs" / job.id / "run" / "checkpoints"
            path.mkdir(parents=True)
            (path / "last.ckpt").write_bytes(b"x")
        db.session.commit()
        changed = jobs.recover_stale()
        assert [j.id for j in changed] == [job.id]
        return db.session.get(Job, job.id)


def test_recovery_resumes_training_from_checkpoint(tmp_path):
    from src.app.pipeline import job_steps
    from src.app.storage import job_dir

    app = make_app(tmp_path, users=("alice",))
    job = _fake_running(app, "train", ckpt=True)
    with app.app_context():
        assert job.status == "queued" and "resumed from its checkpoint" in job.note
        steps = job_steps(app.config, "train", job.params_dict, job_dir(job.user_id, job.id))
        train = next(s for s in steps if s["name"] == "train")
        assert train["argv"][-1].startswith("ckpt_path=") and train["argv"][-1].endswith("last.ckpt")


def test_recovery_fails_training_without_checkpoint_with_reason(tmp_path):
    app = make_app(tmp_path, users=("alice",))
    job = _fake_running(app, "train", ckpt=False)
    assert job.status == "failed" and "before the first checkpoint was written" in job.error
    job = _fake_running(app, "train", ckpt=True, attempts=3)
    assert job.status == "failed" and "interrupted by a server restart 3 times" in job.error


@pytest.mark.slow
def test_worker_killed_during_training_resumes_from_checkpoint(tmp_path):
    """The real thing: kill -9 the supervised worker once last.ckpt exists; a new worker is there within
    10 s, the old train.py died with its worker, and the run resumes from the checkpoint."""
    from tests.app_fixtures import csrf, run_queue

    app = make_app(tmp_path)
    client = login(app, "alice")
    upload_id = upload(client, VIDEOS / "single_face.mp4").headers["Location"].rsplit("/", 1)[-1]
    run_queue(app)
    token = csrf(client, f"/uploads/{upload_id}")
    client.post(
        f"/uploads/{upload_id}/avatar",
        data={
            "name": "t",
            "family": "mesh",
            "quality": "quick",
            "n_identity": "20",
            "texture_size": "256",
            "csrf_token": token,
        },
    )
    job_id = last_job(app, "train").id
    ckpt = (
        tmp_path
        / "users"
        / job_of(app, job_id).user_id
        / "jobs"
        / job_id
        / "run"
        / "checkpoints"
        / "last.ckpt"
    )
    server = start_worker(tmp_path, tmp_path / "run.log", ("run", "--port", str(_free_port())))  # supervised
    try:
        wait_for(ckpt.exists, 900, "the first checkpoint")
        job, _ = _kill_supervised_worker(app, job_id, job_of(app, job_id).pid, 1200)
    finally:
        server.terminate()
        server.wait(60)
    assert job.status == "done", (job.error, job.log_tail)
    assert "resumed from its checkpoint" in job.note
    log = (ckpt.parents[2] / "job.log").read_text()
    assert f"ckpt_path={ckpt}" in log and "Restoring states from the checkpoint" in log


def test_cancel_queued_and_running_jobs(tmp_path):
    """Cancel: a queued job stops at once; a running one has its entry point's process group stopped."""
    import threading

    from src.app.worker import Worker
    from tests.app_fixtures import csrf

    app = make_app(tmp_path, users=("alice",))
    client = login(app, "alice")
    assert upload(client, VIDEOS / "single_face.mp4").status_code == 302
    running_id = last_job(app, "preprocess").id
    assert upload(client, VIDEOS / "single_face.mp4").status_code == 302
    queued_id = last_job(app, "preprocess").id
    token = csrf(client, f"/jobs/{queued_id}")
    assert client.post(f"/jobs/{queued_id}/cancel", data={"csrf_token": token}).status_code == 302
    assert job_of(app, queued_id).status == "cancelled"

    worker = Worker(app, "cancel-test")
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    try:
        job = wait_for(lambda: (j := job_of(app, running_id)).pid and j, 300, "the job to start")
        pid = job.pid
        client.post(f"/jobs/{running_id}/cancel", data={"csrf_token": token})
        job = wait_for(lambda: (j := job_of(app, running_id)).finished and j, 120, "the cancel")
    finally:
        worker.stop.set()
        thread.join(120)
    assert job.status == "cancelled" and job.error == "cancelled by the user"
    assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()
    assert job_of(app, queued_id).status == "cancelled"  # never started


def _beats(app) -> list[tuple[str, int]]:
    from src.app.extensions import db
    from src.app.models import WorkerBeat

    with app.app_context():
        return [(b.id, b.pid) for b in db.session.scalars(db.select(WorkerBeat)).all()]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_supervised_worker(app, job_id: str, step_pid: int, finish_s: float):
    """kill -9 the only worker of ``python -m src.app``: a new one must be online within 10 s, the job's
    step ``step_pid`` must die with its worker, and no later attempt may run while it lives (pids).

    Returns:
        (the finished job, seconds until the new worker was online).
    """
    from src.app.procs import pid_alive

    (old_worker,) = _beats(app)
    os.kill(old_worker[1], signal.SIGKILL)
    killed = time.time()
    new = wait_for(lambda: [b for b in _beats(app) if b[1] != old_worker[1]], 10, "a new worker")
    back_s = time.time() - killed
    assert back_s < 10 and pid_alive(new[0][1])
    wait_for(lambda: not pid_alive(step_pid), 5, "the orphaned step to die with its worker")

    def finished():
        j = job_of(app, job_id)
        if j.pid and j.pid != step_pid:
            assert not pid_alive(step_pid)  # never two attempts at once
        return j.finished and j

    return wait_for(finished, finish_s, "the job to finish"), back_s


def test_supervised_worker_comes_back_and_the_job_never_overlaps(tmp_path):
    """``python -m src.app`` (web + supervised worker): kill -9 of the worker mid-step. A new worker is
    online within 10 s without anyone starting it, the orphaned step died with its worker, and the job's
    next attempt starts only after the old process is gone (checked by pids), then finishes."""
    app = make_app(tmp_path)
    assert upload(login(app, "alice"), VIDEOS / "single_face.mp4").status_code == 302
    job_id = last_job(app, "preprocess").id
    server = start_worker(tmp_path, tmp_path / "run.log", ("run", "--port", str(_free_port())))
    try:
        tracking = wait_for(
            lambda: (j := job_of(app, job_id)).progress_dict.get("step") == "tracking" and j.pid and j,
            600,
            "tracking",
        )
        time.sleep(1.0)
        job, back_s = _kill_supervised_worker(app, job_id, tracking.pid, 600)
        assert server.poll() is None  # the web app kept serving
    finally:
        server.terminate()
        server.wait(60)
    art = ROOT / "tests" / "artifacts"
    art.mkdir(exist_ok=True)
    (art / "worker_restart.json").write_text(json.dumps({"new_worker_online_s": round(back_s, 2)}))
    assert job.status == "done", (job.error, job.log_tail)
    assert job.attempts == 2 and "interrupted by a server restart" in job.note
    log = (tmp_path / "users" / job.user_id / "jobs" / job.id / "job.log").read_text()
    assert log.count("--- step tracking") == 2
    assert not _beats(app)  # the worker signed off when the app stopped
