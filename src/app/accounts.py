"""Accounts: user names, creation, login with throttling and lockout, password changes.

Login attempts are counted per user name in the database (:class:`~src.app.models.LoginThrottle`), for
names that exist and names that do not alike, so neither the answer, its timing nor the lockout tells
whether a name exists: an unknown name is checked against a dummy hash of the same cost. The first
``LOGIN_FREE_FAILURES`` failures are free; from then on every attempt first sets a lockout of
``LOGIN_LOCK_S`` seconds, doubling with each further failure up to ``LOGIN_LOCK_MAX_S``, so at most one
password is checked per lockout window, also when many requests arrive at once (the counter is taken in
the same transaction as the lock). A correct password clears the counter.
"""

from __future__ import annotations

import functools
import re
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from src.app.extensions import db
from src.app.models import LoginThrottle, User, utcnow

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
MIN_PASSWORD = 8


class LoginLockedError(Exception):
    """Too many failed logins for a name; ``retry_s`` until the next attempt is checked."""

    def __init__(self, retry_s: int) -> None:
        super().__init__(f"too many failed logins; try again in {_duration(retry_s)}")
        self.retry_s = retry_s


def _duration(seconds: int) -> str:
    return f"{seconds} s" if seconds < 120 else f"{round(seconds / 60)} min"


def normalize_username(name: str) -> str:
    """The stored form of a user name: trimmed and lower-case; ValueError if it is not a valid name.

    Valid names are 1-80 characters of ``a-z 0-9 . _ -`` starting with a letter or digit, so ``"Alice"``
    and ``" alice"`` are the same user as ``"alice"`` and ``""`` is refused.
    """
    norm = (name or "").strip().lower()
    if not _NAME.match(norm):
        raise ValueError("a user name is 1-80 letters, digits, '.', '_' or '-', starting with a letter/digit")
    return norm


def check_new_password(password: str) -> None:
    """ValueError with the reason if ``password`` is too weak to store."""
    if len(password or "") < MIN_PASSWORD:
        raise ValueError(f"the password needs at least {MIN_PASSWORD} characters")


def create_user(username: str, password: str) -> User:
    """Add a user with a hashed password; ValueError if the name is invalid or taken or the password short."""
    name = normalize_username(username)
    check_new_password(password)
    if db.session.scalar(select(User).where(User.username == name)) is not None:
        raise ValueError(f"user {name!r} exists already; choose another name")
    user = User(username=name)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def change_password(user: User, old: str, new: str) -> None:
    """Set a new password after checking the old one; every existing session ends. ValueError if refused."""
    if not user.check_password(old):
        raise ValueError("the current password is wrong")
    check_new_password(new)
    user.set_password(new)
    db.session.commit()


@functools.cache
def _dummy_hash() -> str:
    """A hash of the same method and cost as real ones, checked for unknown names (equal timing)."""
    return generate_password_hash("not a password of anyone")


def _reserve_attempt(name: str, retries: int = 3) -> None:
    """Count one attempt for ``name`` (and lock ahead of the check once past the free ones); LoginLockedError.

    The counter's UPDATE comes first, so the transaction holds the write lock before it reads (SQLite's
    WAL mode would otherwise refuse to upgrade a stale read); a first attempt inserts the row.
    """
    cfg = current_app.config
    now = utcnow()
    unlocked = (LoginThrottle.locked_until.is_(None)) | (LoginThrottle.locked_until <= now)
    res = db.session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.username == name, unlocked)
        .values(failures=LoginThrottle.failures + 1, last_failure_at=now)
    )
    row = db.session.get(LoginThrottle, name, populate_existing=True)
    if res.rowcount == 0:
        if row is not None:  # locked
            retry = int((row.locked_until - now).total_seconds()) + 1
            db.session.rollback()
            raise LoginLockedError(retry)
        row = LoginThrottle(username=name, failures=1, last_failure_at=now)
        db.session.add(row)
        try:
            db.session.flush()
        except IntegrityError:  # a parallel first attempt inserted it: count again
            db.session.rollback()
            if retries <= 0:
                raise
            return _reserve_attempt(name, retries - 1)
    free = int(cfg["LOGIN_FREE_FAILURES"])
    if row.failures >= free:
        lock = min(float(cfg["LOGIN_LOCK_MAX_S"]), float(cfg["LOGIN_LOCK_S"]) * 2 ** (row.failures - free))
        row.locked_until = now + timedelta(seconds=lock)
    db.session.commit()


def authenticate(username: str, password: str) -> User | None:
    """The user if ``password`` is right, else None; :class:`LoginLockedError` while the name is locked."""
    try:
        name = normalize_username(username)
    except ValueError:
        name = (username or "").strip().lower()[:80]
    _reserve_attempt(name)
    user = db.session.scalar(select(User).where(User.username == name))
    ok = check_password_hash(user.password_hash if user else _dummy_hash(), password or "")
    if not (ok and user is not None):
        return None
    db.session.execute(db.delete(LoginThrottle).where(LoginThrottle.username == name))
    db.session.commit()
    return user
