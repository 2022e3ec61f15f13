"""The job queue in the database: enqueue, claim (atomic), cancel, and recovery after a restart."""

from __future__ import annotations

import contextlib
import os
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from src.app.extensions import db
from src.app.models import Job, JSONText, utcnow
from src.app.storage import job_dir

_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception)): (.+)$")
_HYDRA_LINE = re.compile(
    r"^(Could not (?:override|load|append) .+|Key '.+' is not in struct|Error merging .+)$"
)


def enqueue(user_id: str, kind: str, params: dict[str, Any], priority: int = 0, **links: str | None) -> Job:
    """Create a queued job (and its folder) for ``user_id``; ``links``: upload_id / avatar_id."""
    job = Job(
        user_id=user_id, kind=kind, params=JSONText.dump(params), priority=priority, seq=time.time(), **links
    )
    db.session.add(job)
    db.session.flush()
    job_dir(user_id, job.id).mkdir(parents=True, exist_ok=True)
    db.session.commit()
    return job


def claim_next(worker_id: str) -> Job | None:
    """Atomically move the first queued job (priority, then enqueue order) to ``running`` for this worker."""
    while True:
        job_id = db.session.scalar(
            select(Job.id)
            .where(Job.status == "queued")
            .order_by(Job.priority.desc(), Job.seq, Job.id)
            .limit(1)
        )
        if job_id is None:
            return None
        now = utcnow()
        res = db.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued")
            .values(
                status="running",
                worker_id=worker_id,
                started_at=now,
                heartbeat_at=now,
                attempts=Job.attempts + 1,
            )
        )
        db.session.commit()
        if res.rowcount == 1:
            return db.session.get(Job, job_id)
        # another worker took it first: look again


def request_cancel(job: Job) -> None:
    """Cancel a queued job now; ask the worker to stop a running one."""
    if job.status == "queued":
        job.status, job.finished_at, job.error = "cancelled", utcnow(), "cancelled by the user"
    elif job.status == "running":
        job.cancel_requested = True
    db.session.commit()


def error_line(log_text: str) -> str | None:
    """The last ``SomeError: message`` line of a log: the one-line message the pipeline raised.

    Hydra's override errors (no exception line) give their own lines, joined.
    """
    lines = [line.strip() for line in log_text.splitlines()]
    for line in reversed(lines):
        m = _ERROR_LINE.match(line)
        if m:
            return f"{m.group(2)} ({m.group(1)})"
    hydra = [line for line in lines if _HYDRA_LINE.match(line)]
    return " ".join(hydra[-2:]) if hydra else None


def _kill_orphan(job: Job) -> None:
    """Stop the entry point a dead worker left running (only if it is still this job's process)."""
    if not job.pid:
        return
    try:
        cmdline = Path(f"/proc/{job.pid}/cmdline").read_bytes().decode(errors="ignore")
    except OSError:
        return
    if job.id in cmdline:
        with contextlib.suppress(OSError):
            os.killpg(job.pid, 15)


def recover_stale(stale_s: float | None = None) -> list[Job]:
    """Jobs left ``running`` by a worker that stopped (no heartbeat for ``STALE_S``): requeue or fail.

    A training job with a ``last.ckpt`` is queued again and resumes from it; one without a checkpoint is
    marked failed with the reason. Preprocessing resumes from its own cache, renders restart; after
    ``MAX_ATTEMPTS`` starts a job is failed. Nothing stays ``running`` without a live worker.

    Returns:
        The jobs changed.
    """
    cfg = current_app.config
    stale_s = cfg["STALE_S"] if stale_s is None else stale_s
    limit = utcnow() - timedelta(seconds=stale_s)
    stale = db.session.scalars(
        select(Job).where(Job.status == "running", (Job.heartbeat_at < limit) | (Job.heartbeat_at.is_(None)))
    ).all()
    for job in stale:
        _kill_orphan(job)
        ckpt = job_dir(job.user_id, job.id) / "run" / "checkpoints" / "last.ckpt"
        reason = "interrupted by a server restart"
        if job.cancel_requested:
            job.status, job.error = "cancelled", "cancelled by the user"
        elif job.attempts >= cfg["MAX_ATTEMPTS"]:
            job.status, job.error = (
                "failed",
                f"{reason} {job.attempts} times; start it again when the server is stable",
            )
        elif job.kind == "train" and job.progress_dict.get("step") == "train" and not ckpt.exists():
            job.status, job.error = (
                "failed",
                f"{reason} before the first checkpoint was written; start it again",
            )
        else:
            job.status = "queued"
            job.note = (
                f"{reason}; resumed from its checkpoint"
                if job.kind == "train" and ckpt.exists()
                else f"{reason}; restarted (finished steps are kept)"
            )
        if job.status != "queued":
            job.finished_at = utcnow()
        job.worker_id, job.pid = None, None
    db.session.commit()
    return list(stale)
