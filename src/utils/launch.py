"""``python -m src.utils.launch PARENT_PID -- CMD ...``: run CMD so that it dies with its parent.

A supervisor (the studio's worker, or the app that keeps a worker alive) starts its children through this
module: on Linux it asks the kernel to SIGKILL the process when the thread that started it ends
(``prctl(PR_SET_PDEATHSIG)``, kept across ``exec``), checks that the parent is still ``PARENT_PID`` (it
may have died before the request was made), then replaces itself with CMD (same pid, so the parent's
process-group handling and pid bookkeeping apply to CMD). A supervisor killed with ``kill -9`` therefore
leaves no entry point running unsupervised. Elsewhere CMD runs without that guarantee.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent thread ends; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def launch_argv(argv: list[str], python: str | None = None) -> list[str]:
    """``argv`` wrapped so that it dies with the calling process (run it with ``subprocess.Popen``)."""
    return [python or sys.executable, "-m", "src.utils.launch", str(os.getpid()), "--", *argv]


def main(args: list[str]) -> None:
    """Parse ``PARENT_PID -- CMD ...``, arm the parent-death signal and exec CMD."""
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        sys.exit("usage: python -m src.utils.launch PARENT_PID -- CMD [ARGS ...]")
    parent, cmd = int(args[0]), args[2:]
    die_with_parent()
    if os.getppid() != parent:  # the parent died before the signal was armed
        sys.exit(1)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
