"""The job queue in the database: enqueue, claim (atomic), cancel, and recovery after a restart."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update

from src.app.extensions import db
from src.app.models import Job, JSONText, WorkerBeat, utcnow
from src.app.procs import local_worker_dead, stop_group
from src.app.storage import job_dir

_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception)): (.+)$")
_HYDRA_LINE = re.compile(
    r"^(Could not (?:override|load|append) .+|Key '.+' is not in struct|Error merging .+)$"
)


class QueueFullError(Exception):
    """The user has ``QUEUE_PER_USER`` jobs waiting already."""


def ensure_room(user_id: str) -> None:
    """QueueFullError if ``user_id`` has ``QUEUE_PER_USER`` jobs queued (not yet started) already."""
    cap = int(current_app.config["QUEUE_PER_USER"])
    waiting = db.session.scalar(
        select(func.count()).select_from(Job).where(Job.user_id == user_id, Job.status == "queued")
    )
    if waiting >= cap:
        raise QueueFullError(f"you have {waiting} jobs waiting already; wait for one to start or cancel one")


def enqueue(user_id: str, kind: str, params: dict[str, Any], priority: int = 0, **links: str | None) -> Job:
    """Create a queued job (and its folder) for ``user_id``; ``links``: upload_id / avatar_id.

    Raises:
        QueueFullError: the user has ``QUEUE_PER_USER`` jobs queued (not yet started) already.
    """
    ensure_room(user_id)
    job = Job(
        user_id=user_id, kind=kind, params=JSONText.dump(params), priority=priority, seq=time.time(), **links
    )
    db.session.add(job)
    db.session.flush()
    job_dir(user_id, job.id).mkdir(parents=True, exist_ok=True)
    db.session.commit()
    return job


def next_job_id() -> str | None:
    """The queued job to run next: highest priority first, then round-robin between users.

    Among the users with a job at that priority, the one with the fewest running jobs goes first, then the
    one whose last job started longest ago, so one user's ten queued renders do not hold back another
    user's job; each user's own jobs run in the order they were queued.
    """
    queued = db.session.execute(
        select(Job.id, Job.user_id, Job.priority, Job.seq).where(Job.status == "queued")
    ).all()
    if not queued:
        return None
    top = max(q.priority for q in queued)
    users = {q.user_id for q in queued if q.priority == top}
    running = dict(
        db.session.execute(
            select(Job.user_id, func.count())
            .where(Job.status == "running", Job.user_id.in_(users))
            .group_by(Job.user_id)
        ).all()
    )
    last = dict(
        db.session.execute(
            select(Job.user_id, func.max(Job.started_at))
            .where(Job.user_id.in_(users), Job.started_at.is_not(None))
            .group_by(Job.user_id)
        ).all()
    )
    never = datetime.min

    def order(q) -> tuple:
        return (running.get(q.user_id, 0), last.get(q.user_id) or never, q.seq, q.id)

    return min((q for q in queued if q.priority == top), key=order).id


def claim_next(worker_id: str) -> Job | None:
    """Atomically move the next queued job (:func:`next_job_id`) to ``running`` for this worker."""
    while True:
        job_id = next_job_id()
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


def _stop_orphan(job: Job) -> None:
    """Stop the entry point a dead worker left running and wait until it is gone (if it is this job's).

    Children started through :mod:`src.utils.launch` die with their worker already; this covers a worker
    on another host's clock or a platform without the parent-death signal. The next attempt starts only
    after the old process group has no live process left, so two attempts never share the run folder.
    """
    if not job.pid:
        return
    try:
        cmdline = Path(f"/proc/{job.pid}/cmdline").read_bytes().decode(errors="ignore")
    except OSError:
        return
    if job.id in cmdline:
        stop_group(job.pid)


def recover_stale(stale_s: float | None = None, own: str | None = None) -> list[Job]:
    """Jobs left ``running`` by a worker that stopped: requeue or fail them.

    A worker has stopped when its job has had no heartbeat for ``STALE_S``, or at once when the worker
    ran on this host and its process is gone (a worker restarted after ``kill -9`` recovers right away).
    The jobs of worker ``own`` (the caller) are never taken: it is alive, only its heartbeat is late
    (a machine so busy that a heartbeat waits longer than ``STALE_S``).

    A training job with a ``last.ckpt`` is queued again and resumes from it; one without a checkpoint is
    marked failed with the reason. Preprocessing resumes from its own cache, renders restart; after
    ``MAX_ATTEMPTS`` starts a job is failed. Nothing stays ``running`` without a live worker.

    Returns:
        The jobs changed.
    """
    cfg = current_app.config
    stale_s = cfg["STALE_S"] if stale_s is None else stale_s
    limit = utcnow() - timedelta(seconds=stale_s)
    running = db.session.scalars(select(Job).where(Job.status == "running")).all()
    running = [j for j in running if own is None or j.worker_id != own]
    stale = [
        j
        for j in running
        if j.heartbeat_at is None or j.heartbeat_at < limit or local_worker_dead(j.worker_id)
    ]
    for job in stale:
        _stop_orphan(job)
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


def worker_online() -> bool:
    """Whether a worker has beaten its heartbeat within ``STALE_S``."""
    limit = utcnow() - timedelta(seconds=current_app.config["STALE_S"])
    return (
        db.session.scalar(select(WorkerBeat.id).where(WorkerBeat.heartbeat_at >= limit).limit(1)) is not None
    )


def typical_minutes() -> dict[str, dict[str, float]]:
    """How long finished trainings took on this server: ``{family: {quality: median minutes}}``.

    Taken from the database's finished training jobs (queue time excluded), so the estimate is this
    server's own, GPU or CPU; empty until a training of that kind has finished here.
    """
    rows = db.session.execute(
        select(Job.params, Job.started_at, Job.finished_at).where(
            Job.kind == "train",
            Job.status == "done",
            Job.started_at.is_not(None),
            Job.finished_at.is_not(None),
        )
    ).all()
    times: dict[tuple[str, str], list[float]] = {}
    for params, started, finished in rows:
        p = JSONText.load(params)
        key = (str(p.get("family", "")), str(p.get("quality", "")))
        times.setdefault(key, []).append((finished - started).total_seconds() / 60)
    out: dict[str, dict[str, float]] = {}
    for (family, quality), values in times.items():
        values.sort()
        out.setdefault(family, {})[quality] = round(values[len(values) // 2], 1)
    return out
