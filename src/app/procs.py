"""Processes of the studio on this host: is a pid or a process group alive, stop a group and wait."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path


def _stat(pid_dir: Path) -> tuple[str, int] | None:
    """(state, process group) of ``/proc/<pid>``; None if it is gone."""
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
    return fields[0], int(fields[2])


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    if pid <= 0:
        return False
    proc = Path("/proc")
    if proc.is_dir():
        st = _stat(proc / str(pid))
        return st is not None and st[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in process group ``pgid``."""
    if pgid <= 0:
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for d in proc.iterdir():
        if d.name.isdigit():
            st = _stat(d)
            if st is not None and st[1] == pgid and st[0] not in ("Z", "X"):
                return True
    return False


def stop_group(pgid: int, grace_s: float = 10.0) -> bool:
    """SIGTERM process group ``pgid``, SIGKILL after ``grace_s``; True once no live process is left in it."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        if not group_alive(pgid):
            return True
        with contextlib.suppress(OSError):
            os.killpg(pgid, sig)
        end = time.time() + wait_s
        while time.time() < end and group_alive(pgid):
            time.sleep(0.1)
    return not group_alive(pgid)


def local_worker_dead(worker_id: str | None) -> bool:
    """Whether ``worker_id`` (``host:pid:suffix``) names a worker of this host whose process is gone."""
    if not worker_id or worker_id.count(":") < 2:
        return False
    host, pid, _ = worker_id.rsplit(":", 2)
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))
