"""The worker: takes queued jobs from the database one at a time (``WORKER_SLOTS``) and runs their steps.

Each step is a project entry point run as a subprocess in its own process group, its output appended to
the job folder's ``job.log``; the worker beats a heartbeat into the job row, reports progress (training:
steps or epochs done, loss, stage, ETA, latest validation image from the run folder), and stops the
process group when the user cancels. Run it with ``python -m src.app worker``.
"""

from __future__ import annotations

import csv
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import traceback
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from omegaconf import OmegaConf

from src.app import jobs
from src.app.extensions import db
from src.app.models import Job, JSONText, WorkerBeat, utcnow
from src.app.pipeline import job_steps
from src.app.procs import local_worker_dead
from src.app.redact import redact, user_error
from src.app.steps import CALLS
from src.app.storage import job_dir
from src.utils import confdir  # noqa: F401  (registers the config resolvers, e.g. ${stage_steps:...})
from src.utils.launch import launch_argv

log = logging.getLogger(__name__)
TAIL_BYTES = 6000
STOPPED_NOTE = "the server was stopped while this job ran; it continues when the server is back"


def read_tail(path: Path, n: int = TAIL_BYTES) -> str:
    """The last ``n`` bytes of a text file ('' if missing), progress-bar carriage returns folded."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - n))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines())


def training_budget(run: Path) -> dict[str, Any]:
    """How long a training run is, from its composed config (``run/.hydra/config.yaml``).

    Returns:
        {"unit": "step", "total": trainer.max_steps, "stages": [(name, steps), ...]} for a step budget (the
        mesh avatar's stages), {"unit": "epoch", "total": trainer.max_epochs} for an epoch budget, or {}
        while the config is not written yet.
    """
    path = run / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    cfg = OmegaConf.load(path)
    max_steps = OmegaConf.select(cfg, "trainer.max_steps", default=-1)  # ${stage_steps:...} resolves here
    if max_steps not in (None, -1):
        stages = OmegaConf.select(cfg, "model.stages", default=None) or {}
        named = [(str(n), int(st.get("steps", 0))) for n, st in stages.items() if int(st.get("steps", 0)) > 0]
        return {"unit": "step", "total": int(max_steps), "stages": named}
    max_epochs = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    return {"unit": "epoch", "total": int(max_epochs)} if max_epochs not in (None, -1) else {}


def training_progress(jdir: Path, clock: dict[str, float], running: bool = True) -> dict[str, Any]:
    """Steps (or epochs) done of the run's budget, loss, stage, ETA and the latest validation image.

    Args:
        jdir: the job folder (its ``run/`` is the training run).
        clock: kept by the caller across calls: the time and count of the first progress seen, so the ETA
            comes from the measured rate of steps (start-up, data loading and the first step's warm-up
            excluded), not from the time since the process started.
        running: the run is still going (once its budget is done it is fitting and scoring held-out frames).

    Returns:
        ``unit``, ``total``, ``done``, ``stage`` (a named stage; ``held-out fit and scoring`` once the budget
        is done and the run tests), ``eta_s`` (while steps remain), ``loss``, ``val_image``.
    """
    run = jdir / "run"
    budget = training_budget(run)
    out: dict[str, Any] = {}
    rows: list[dict[str, str]] = []
    for f in sorted(run.glob("csv/version_*/metrics.csv")):
        with open(f, newline="") as fh:
            rows += list(csv.DictReader(fh))
    if budget:
        total, unit = budget["total"], budget["unit"]
        out.update(unit=unit, total=total)
        col = "step" if unit == "step" else "epoch"
        seen = [int(float(r[col])) for r in rows if r.get(col) and r.get("train/loss")]
        if seen:
            done = min(max(seen) + 1, total)  # 0-based step/epoch of the latest training row
            out["done"] = done
            start = 0
            for name, steps in budget.get("stages", []):
                out["stage"] = name
                start += steps
                if done <= start:
                    break
            now = time.time()
            if "t0" not in clock:
                clock.update(t0=now, done0=done)
            if done >= total and running:
                out["stage"] = "held-out fit and scoring"
            elif done > clock["done0"]:
                rate = (now - clock["t0"]) / (done - clock["done0"])
                out["eta_s"] = round(rate * (total - done))
    losses = [r for r in rows if r.get("train/loss")]
    if losses:
        out["loss"] = round(float(losses[-1]["train/loss"]), 5)
    images = sorted(run.glob("images/val_epoch_*.png"))
    if images:
        out["val_image"] = images[-1].relative_to(jdir).as_posix()
    return out


def safe_progress(jdir: Path, clock: dict[str, float], running: bool = True) -> dict[str, Any]:
    """:func:`training_progress`, or {} while the run's files are half-written (the run rewrites its
    config and metrics as it goes; a progress report must never fail the job)."""
    try:
        return training_progress(jdir, clock, running)
    except Exception as e:  # a partial YAML or CSV line: report again at the next heartbeat
        log.debug("progress of %s not readable yet: %s", jdir.name, e)
        return {}


class Worker:
    """Runs queued jobs of the app's database.

    Args:
        app: the Flask app (for its config and database).
        worker_id: a name for this worker (default: host, pid and a random suffix).
    """

    def __init__(self, app: Flask, worker_id: str | None = None) -> None:
        self.app = app
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stop = threading.Event()
        self.threads: dict[str, threading.Thread] = {}

    def run_forever(self) -> None:
        """Recover interrupted jobs, then keep up to ``WORKER_SLOTS`` jobs running until :attr:`stop`."""
        cfg = self.app.config
        last_recover = last_beat = 0.0
        while not self.stop.is_set():
            self.threads = {k: t for k, t in self.threads.items() if t.is_alive()}
            with self.app.app_context():
                if time.time() - last_beat > cfg["HEARTBEAT_S"]:
                    self.beat()
                    last_beat = time.time()
                if time.time() - last_recover > cfg["STALE_S"] / 2:
                    for job in jobs.recover_stale(own=self.id):
                        log.warning(
                            "job %s was interrupted: now %s (%s)", job.id, job.status, job.error or job.note
                        )
                    last_recover = time.time()
                while len(self.threads) < cfg["WORKER_SLOTS"]:
                    job = jobs.claim_next(self.id)
                    if job is None:
                        break
                    t = threading.Thread(target=self.run_job, args=(job.id,), daemon=True)
                    self.threads[job.id] = t
                    t.start()
            self.stop.wait(cfg["WORKER_POLL_S"])
        for t in self.threads.values():
            t.join()
        with self.app.app_context():
            db.session.execute(db.delete(WorkerBeat).where(WorkerBeat.id == self.id))
            db.session.commit()

    def beat(self) -> None:
        """Record that this worker is online (and forget workers silent for ten times ``STALE_S``)."""
        now = utcnow()
        row = db.session.get(WorkerBeat, self.id)
        if row is None:
            row = WorkerBeat(id=self.id, host=socket.gethostname(), pid=os.getpid(), started_at=now)
            db.session.add(row)
        row.heartbeat_at = now
        old = now - timedelta(seconds=10 * self.app.config["STALE_S"])
        db.session.execute(db.delete(WorkerBeat).where(WorkerBeat.heartbeat_at < old))
        for other in db.session.scalars(db.select(WorkerBeat).where(WorkerBeat.id != self.id)).all():
            if local_worker_dead(other.id):  # a worker of this host that was killed
                db.session.delete(other)
        db.session.commit()

    def run_once(self) -> str | None:
        """Claim and run one queued job in this thread; its id, or None if the queue is empty (tests)."""
        with self.app.app_context():
            job = jobs.claim_next(self.id)
            job_id = job.id if job else None
        if job_id:
            self.run_job(job_id)
        return job_id

    def run_job(self, job_id: str) -> None:
        """Run the remaining steps of a claimed job; leave it done, failed (with its reason) or cancelled."""
        with self.app.app_context():
            job = db.session.get(Job, job_id)
            jdir = job_dir(job.user_id, job.id)
            jdir.mkdir(parents=True, exist_ok=True)
            logfile = jdir / "job.log"
            with open(logfile, "a") as fh:
                fh.write(f"=== {utcnow().isoformat()} worker {self.id}, attempt {job.attempts}\n")
            try:
                status, error = self._steps(job, jdir, logfile)
            except Exception:  # a bug or a broken file in an in-process step: keep the job's record
                with open(logfile, "a") as fh:
                    fh.write(traceback.format_exc())
                status, error = "failed", "an internal error stopped this job; the operator can read its log"
            db.session.refresh(job)
            job.status, job.error, job.pid = status, user_error(error), None
            job.log_tail = redact(read_tail(logfile))
            if status == "queued":
                job.worker_id, job.note = None, STOPPED_NOTE
            else:
                job.finished_at = utcnow()
                if job.note == STOPPED_NOTE:
                    job.note = None  # it did resume: the note is history
            db.session.commit()
            log.info("job %s (%s): %s %s", job.id, job.kind, status, error or "")

    def _steps(self, job: Job, jdir: Path, logfile: Path) -> tuple[str, str | None]:
        cfg = self.app.config
        params = job.params_dict
        steps = job_steps(cfg, job.kind, params, jdir)
        progress = job.progress_dict
        done = int(progress.get("steps_done", 0))
        for i, step in enumerate(steps):
            if i < done:
                continue
            progress.update(step=step["name"], step_index=i + 1, n_steps=len(steps))
            progress.pop("eta_s", None)  # an estimate belongs to its step
            job.progress = JSONText.dump(progress)
            db.session.commit()
            if "call" in step:
                progress.update(CALLS[step["call"]](params, jdir) or {})
            else:
                status, error = self._subprocess(job, step, jdir, logfile, progress)
                if status != "done":
                    return status, error
            progress["steps_done"] = i + 1
            job.progress = JSONText.dump(progress)
            db.session.commit()
        progress.pop("eta_s", None)
        progress["step"] = "finished"
        job.progress = JSONText.dump(progress)
        db.session.commit()
        return "done", None

    def _subprocess(
        self, job: Job, step: dict, jdir: Path, logfile: Path, progress: dict
    ) -> tuple[str, str | None]:
        cfg = self.app.config
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "AVATAR_APP_JOB": job.id}
        with open(logfile, "a") as fh:
            fh.write(f"--- step {step['name']}: {' '.join(step['argv'][1:])}\n")
            fh.flush()
            proc = subprocess.Popen(
                launch_argv(step["argv"], python=step["argv"][0]),  # dies with this worker
                cwd=cfg["PROJECT_ROOT"],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        job.pid = proc.pid
        db.session.commit()
        last_beat, clock = 0.0, {}
        while proc.poll() is None:
            time.sleep(0.5)
            if time.time() - last_beat < cfg["HEARTBEAT_S"]:
                continue
            last_beat = time.time()
            db.session.refresh(job)
            if job.cancel_requested:
                self._terminate(proc)
                return "cancelled", "cancelled by the user"
            if self.stop.is_set():  # the worker is shutting down: stop the step, requeue the job
                self._terminate(proc)
                return "queued", None
            if step["name"] == "train":
                progress.pop("eta_s", None)  # only a fresh estimate is shown
                progress.update(safe_progress(jdir, clock))
                job.progress = JSONText.dump(progress)
            job.heartbeat_at, job.log_tail = utcnow(), redact(read_tail(logfile))
            db.session.commit()
        if step["name"] == "train":
            progress.update(safe_progress(jdir, clock, running=False))
            progress.pop("eta_s", None)
        if proc.returncode != 0:
            text = read_tail(logfile, 20000)
            reason = (
                jobs.error_line(text)
                or f"{step['name']} stopped with exit code {proc.returncode}; see the log"
            )
            return "failed", reason
        return "done", None

    @staticmethod
    def _terminate(proc: subprocess.Popen) -> None:
        """SIGTERM the step's process group, SIGKILL after 10 s."""
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
