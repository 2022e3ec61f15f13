"""Database tables: users, uploads (each with its subject), avatars, jobs, login throttles and workers.

Ids are random UUIDs.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from src.app.extensions import db
from src.app.redact import redact, user_error

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")


def new_id() -> str:
    """A random UUID4 string (ids are never counters)."""
    return str(uuid.uuid4())


def new_token() -> str:
    """A random session token (rotated at logout and on a password change)."""
    return secrets.token_hex(16)


def hash_token(token: str) -> str:
    """SHA-256 hex of an API token (tokens carry 256 random bits, so no salt or slow hash is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def utcnow() -> datetime:
    """Timezone-naive UTC now (what SQLite stores)."""
    return datetime.now(UTC).replace(tzinfo=None)


class JSONText:
    """Helpers for JSON kept in a text column."""

    @staticmethod
    def load(text: str | None) -> Any:
        return json.loads(text) if text else {}

    @staticmethod
    def dump(obj: Any) -> str:
        return json.dumps(obj)


class User(db.Model, UserMixin):
    """A person with a login; owns uploads, avatars and jobs."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(80), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    session_token: Mapped[str] = mapped_column(String(32), default=new_token, server_default="")
    api_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    def get_id(self) -> str:
        """What the session cookie holds: the id and the current session token (:meth:`revoke_sessions`)."""
        return f"{self.id}:{self.session_token}"

    def revoke_sessions(self) -> None:
        """Invalidate every session cookie issued so far (logout, password change)."""
        self.session_token = new_token()

    def new_api_token(self) -> str:
        """A new token for the JSON API (the old one stops working); only its SHA-256 is stored."""
        token = "av_" + secrets.token_urlsafe(32)
        self.api_token_hash = hash_token(token)
        return token

    def set_password(self, password: str) -> None:
        """Store a salted hash (werkzeug's scrypt) of ``password``, never the password; ends all sessions."""
        self.password_hash = generate_password_hash(password)
        self.revoke_sessions()

    def check_password(self, password: str) -> bool:
        """Whether ``password`` matches the stored hash."""
        return check_password_hash(self.password_hash, password)


class Upload(db.Model):
    """An uploaded video and the subject its preprocessing job builds."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("user.id"), index=True, nullable=False)
    purpose: Mapped[str] = mapped_column(String(16), default="subject")  # subject | driving
    filename: Mapped[str] = mapped_column(String(255), nullable=False)  # sanitised original name
    stored_name: Mapped[str] = mapped_column(String(64), nullable=False)  # file name in the upload folder
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    video_info: Mapped[str] = mapped_column(Text, default="{}")  # decode check: codec, size, fps, seconds
    resolution: Mapped[int] = mapped_column(Integer, default=256)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # its preprocessing job
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    @property
    def info(self) -> dict[str, Any]:
        return JSONText.load(self.video_info)


class Avatar(db.Model):
    """A trained (or training) avatar built from one upload's subject."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("user.id"), index=True, nullable=False)
    upload_id: Mapped[str] = mapped_column(ForeignKey("upload.id"), nullable=False)
    name: Mapped[str] = mapped_column(String(120), default="avatar")
    family: Mapped[str] = mapped_column(String(16), default="mesh")  # mesh | image
    settings: Mapped[str] = mapped_column(Text, default="{}")
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # its training job
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    @property
    def settings_dict(self) -> dict[str, Any]:
        return JSONText.load(self.settings)


class Job(db.Model):
    """One queued run of the project's entry points; its files live in the owner's job folder."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("user.id"), index=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # preprocess | train | reenact | cross
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)  # higher first; FIFO within a priority
    seq: Mapped[float] = mapped_column(Float, default=0.0)  # enqueue time (monotonic order key)
    upload_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    avatar_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    params: Mapped[str] = mapped_column(Text, default="{}")  # what to run (see src.app.pipeline)
    progress: Mapped[str] = mapped_column(Text, default="{}")  # step, stage, epoch, loss, eta, ...
    log_tail: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # one line for the user
    note: Mapped[str | None] = mapped_column(Text, nullable=True)  # e.g. "resumed from epoch 3"
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    @property
    def params_dict(self) -> dict[str, Any]:
        return JSONText.load(self.params)

    @property
    def progress_dict(self) -> dict[str, Any]:
        return JSONText.load(self.progress)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    def to_public(self) -> dict[str, Any]:
        """What the status API returns to the owner."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": self.progress_dict,
            "error": user_error(self.error),
            "note": self.note,
            "log_tail": redact(self.log_tail[-3000:]),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


class LoginThrottle(db.Model):
    """Failed logins per user name (known or not, so the answer never tells which) and the lockout."""

    username: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class WorkerBeat(db.Model):
    """A worker process that is alive: its heartbeat (the pages say when none is online)."""

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
