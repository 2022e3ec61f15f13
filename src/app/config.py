"""App settings: defaults here, overridden by ``AVATAR_APP_*`` environment variables or ``create_app(...)``.

Every setting is a Flask config key. Paths default to ``<project>/data/app`` (the project's usual data
folder); the database is a SQLite file there unless ``SQLALCHEMY_DATABASE_URI`` names another (any
SQLAlchemy URL, e.g. ``postgresql+psycopg://user@host/avatar``).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]

DEFAULTS: dict[str, Any] = {
    "DATA_DIR": str(PROJECT_ROOT / "data" / "app"),  # users' uploads and job folders
    "SQLALCHEMY_DATABASE_URI": None,  # None: sqlite:///<DATA_DIR>/avatar.db
    "MAX_CONTENT_LENGTH": 200 * 1024 * 1024,  # bytes per request (uploads); larger ones get 413
    "MAX_VIDEO_SECONDS": 120.0,  # longer videos are refused at upload
    "WORKER_SLOTS": 1,  # jobs run at the same time by one worker (one GPU/CPU job by default)
    "WORKER_POLL_S": 1.0,  # how often an idle worker looks for queued jobs
    "HEARTBEAT_S": 2.0,  # a running job's heartbeat period
    "STALE_S": 30.0,  # a running job without a heartbeat for this long was interrupted (restart)
    "MAX_ATTEMPTS": 3,  # restarts after interruptions before a job is marked failed
    "QUEUE_PER_USER": 5,  # jobs one user may have waiting; the queue serves users round-robin
    "PYTHON": sys.executable,  # interpreter the entry points run with
    "PROJECT_ROOT": str(PROJECT_ROOT),  # where train.py, reenact.py and conf/ live
    "EXTRA_OVERRIDES": {},  # {"train": [...], "preprocess": [...], ...}: appended to each entry point's args
    "ORBIT_FRAMES": 48,  # length of the orbit video made after training
    "HOST": "127.0.0.1",
    "PORT": 5000,
    "LOGIN_FREE_FAILURES": 5,  # failed logins per user name before each further attempt is locked out
    "LOGIN_LOCK_S": 30.0,  # the first lockout; it doubles with each further failure
    "LOGIN_LOCK_MAX_S": 3600.0,  # the longest lockout
    "PERMANENT_SESSION_LIFETIME": 12 * 3600,  # seconds a login lasts without activity (checked on the server)
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SECURE": False,  # true behind an HTTPS reverse proxy
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"timeout": 30}},
}


def _parse(value: str, default: Any) -> Any:
    """An environment string converted to the type of ``default`` (JSON for dicts/lists/None)."""
    if isinstance(default, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, dict | list):
        return json.loads(value)
    return value


def load_settings(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then ``AVATAR_APP_<KEY>`` environment variables, then ``overrides``.

    Args:
        overrides: settings given in code (tests, the CLI).

    Returns:
        The complete settings, with ``SQLALCHEMY_DATABASE_URI`` and ``SECRET_KEY`` filled in.
    """
    settings = dict(DEFAULTS)
    for key, default in DEFAULTS.items():
        env = os.environ.get(f"AVATAR_APP_{key}")
        if env is not None:
            settings[key] = _parse(env, default)
    if os.environ.get("AVATAR_APP_SECRET_KEY"):
        settings["SECRET_KEY"] = os.environ["AVATAR_APP_SECRET_KEY"]
    settings.update(overrides or {})
    data_dir = Path(settings["DATA_DIR"]).resolve()
    settings["DATA_DIR"] = str(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.get("SQLALCHEMY_DATABASE_URI"):
        settings["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{data_dir / 'avatar.db'}"
    if not settings.get("SECRET_KEY"):
        settings["SECRET_KEY"] = _secret_key(data_dir / "secret_key")
    return settings


def _secret_key(path: Path) -> str:
    """The session-signing key kept in ``path`` (created once, owner-readable only)."""
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process (web or worker) made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key
