"""Where users' files live, and the only way they are read back: inside the owner's own folder.

Layout under ``DATA_DIR``::

    users/<user id>/uploads/<upload id>/<stored video>     uploaded videos (decode-checked)
    users/<user id>/jobs/<job id>/                         one job's run folder: job.log, entry-point outputs
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from flask import abort, current_app

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_filename(name: str, default: str = "file") -> str:
    """A display-safe file name: ASCII letters, digits, ``._-``; no path parts, no leading dots.

    Args:
        name: the name the browser sent (may contain folders, ``..``, unicode, control characters).
        default: used when nothing safe is left.

    Returns:
        At most 100 characters, e.g. ``"../../etc/passwd"`` -> ``"passwd"``, ``"mé ü.mp4"`` -> ``"me_u.mp4"``.
    """
    name = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode("ascii")
    name = name.replace("\\", "/").split("/")[-1]
    name = _SAFE.sub("_", name).strip("._")
    return name[:100] or default


def restrict_permissions(root: Path) -> int:
    """Make the app's files readable by its own user only: umask 077 for this process and its children,
    and group/other bits removed from everything already under ``root`` (uploads, runs, the database).

    Returns:
        How many existing files or folders had their mode narrowed.
    """
    os.umask(0o077)
    changed = 0
    root.mkdir(parents=True, exist_ok=True)
    for base, _dirs, files in os.walk(root):
        for path in [base, *(os.path.join(base, n) for n in files)]:
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if mode & 0o077 and not os.path.islink(path):
                os.chmod(path, mode & ~0o077)
                changed += 1
    return changed


def data_dir() -> Path:
    """The app's data folder (absolute, resolved)."""
    return Path(current_app.config["DATA_DIR"])


def user_dir(user_id: str) -> Path:
    """``users/<user id>`` (ids are UUIDs made by the app, never user input)."""
    return data_dir() / "users" / user_id


def upload_dir(user_id: str, upload_id: str) -> Path:
    """The folder of one uploaded video."""
    return user_dir(user_id) / "uploads" / upload_id


def job_dir(user_id: str, job_id: str) -> Path:
    """One job's run folder."""
    return user_dir(user_id) / "jobs" / job_id


def safe_path(base: Path, relpath: str) -> Path | None:
    """``base/relpath`` if it is a regular file inside ``base`` after resolving every symlink, else None.

    Refuses absolute paths, ``..`` parts, NUL bytes, and any path whose real location (symlinks
    followed) leaves ``base``.
    """
    if not relpath or "\x00" in relpath or relpath.startswith(("/", "\\")) or os.path.isabs(relpath):
        return None
    parts = Path(relpath.replace("\\", "/")).parts
    if any(p in ("..", "") for p in parts) or re.match(r"^[A-Za-z]:", relpath):
        return None
    base_real = Path(os.path.realpath(base))
    target = Path(os.path.realpath(base_real.joinpath(*parts)))
    try:
        if os.path.commonpath([base_real, target]) != str(base_real):
            return None
    except ValueError:
        return None
    return target if target.is_file() else None


def owned_file(base: Path, relpath: str) -> Path:
    """:func:`safe_path` or a 404 (the same answer for "missing" and "not allowed")."""
    path = safe_path(base, relpath)
    if path is None:
        abort(404)
    return path
