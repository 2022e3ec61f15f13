"""Delete what a user owns: a job, an avatar, an uploaded video, or the whole account, files and rows.

Everything that depends on the deleted thing goes with it: an avatar takes its training job, its renders
and the driving videos of its cross-reenactments; an uploaded video takes its preprocessing and every
avatar built from it; an account takes everything. Queued jobs among them are cancelled first; while
one of them is running the deletion is refused (and the job asked to stop), so no worker writes into a
folder that is being removed.
"""

from __future__ import annotations

import shutil

from sqlalchemy import or_, select, update

from src.app import jobs
from src.app.extensions import db
from src.app.models import Avatar, Job, LoginThrottle, Upload, User, utcnow
from src.app.storage import job_dir, upload_dir, user_dir


class BusyError(Exception):
    """A job of the thing to delete is running; it has been asked to stop."""


def _closure(user_id: str, uploads: set[str], avatars: set[str]) -> tuple[set[str], set[str], set[str]]:
    """Uploads, avatars and jobs that go with ``uploads`` and ``avatars`` (all of ``user_id``)."""
    job_ids: set[str] = set()
    while True:
        size = (len(uploads), len(avatars), len(job_ids))
        avatars |= set(
            db.session.scalars(
                select(Avatar.id).where(Avatar.user_id == user_id, Avatar.upload_id.in_(uploads))
            )
        )
        rows = db.session.execute(
            select(Job.id, Job.kind, Job.upload_id).where(
                Job.user_id == user_id, or_(Job.avatar_id.in_(avatars), Job.upload_id.in_(uploads))
            )
        ).all()
        job_ids |= {r.id for r in rows}
        uploads |= {r.upload_id for r in rows if r.kind == "cross" and r.upload_id}  # driving videos
        if size == (len(uploads), len(avatars), len(job_ids)):
            return uploads, avatars, job_ids


def _delete(user_id: str, uploads: set[str], avatars: set[str], job_ids: set[str] | None = None) -> None:
    uploads, avatars, closure_jobs = _closure(user_id, set(uploads), set(avatars))
    job_ids = closure_jobs | set(job_ids or ())
    db.session.execute(
        update(Job)
        .where(Job.id.in_(job_ids), Job.status == "queued")
        .values(status="cancelled", error="deleted by the user", finished_at=utcnow())
    )
    db.session.commit()
    running = db.session.scalars(select(Job).where(Job.id.in_(job_ids), Job.status == "running")).all()
    if running:
        for job in running:
            jobs.request_cancel(job)
        raise BusyError("a job of it is still running and is being stopped; delete again in a few seconds")
    for job_id in job_ids:
        shutil.rmtree(job_dir(user_id, job_id), ignore_errors=True)
    for upload_id in uploads:
        shutil.rmtree(upload_dir(user_id, upload_id), ignore_errors=True)
    db.session.execute(db.delete(Avatar).where(Avatar.id.in_(avatars)))
    db.session.execute(db.delete(Job).where(Job.id.in_(job_ids)))
    db.session.execute(db.delete(Upload).where(Upload.id.in_(uploads)))
    db.session.commit()


def delete_job(job: Job) -> None:
    """A render or cross-reenactment job and its files (a training or preprocessing job belongs to its
    avatar or video: delete that instead). ValueError for those, BusyError while it runs."""
    if job.kind in ("train", "preprocess"):
        what = "avatar" if job.kind == "train" else "video"
        raise ValueError(f"this job made an {what}; delete the {what} to remove it")
    _delete(job.user_id, set(), set(), {job.id})


def delete_avatar(avatar: Avatar) -> None:
    """An avatar with its training, its renders and its cross-reenactments' driving videos."""
    _delete(avatar.user_id, set(), {avatar.id})


def delete_upload(upload: Upload) -> None:
    """An uploaded video with its preprocessing and every avatar built from it."""
    _delete(upload.user_id, {upload.id}, set())


def delete_account(user: User) -> None:
    """Everything of ``user`` (files, rows) and the account itself; BusyError while a job runs."""
    uid = user.id
    uploads = set(db.session.scalars(select(Upload.id).where(Upload.user_id == uid)))
    avatars = set(db.session.scalars(select(Avatar.id).where(Avatar.user_id == uid)))
    all_jobs = set(db.session.scalars(select(Job.id).where(Job.user_id == uid)))
    _delete(uid, uploads, avatars, all_jobs)
    shutil.rmtree(user_dir(uid), ignore_errors=True)
    db.session.execute(db.delete(LoginThrottle).where(LoginThrottle.username == user.username))
    db.session.execute(db.delete(User).where(User.id == uid))
    db.session.commit()
