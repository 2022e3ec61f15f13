"""Keep a worker process alive: the embedded setup's ``python -m src.app`` runs web + a supervised worker.

:class:`Supervisor` starts ``python -m src.app worker`` (through :mod:`src.utils.launch`, so the worker
dies with the app) and starts it again whenever it exits: after 1 s, doubling after each quick death up
to ``max_backoff_s``, back to 1 s once a worker has run for ``stable_s``. A worker killed by the kernel's
out-of-memory killer or ``kill -9`` is therefore back within seconds; it recovers its dead predecessor's
job at once (see :func:`src.app.jobs.recover_stale`).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

from src.utils.launch import launch_argv

log = logging.getLogger(__name__)


class Supervisor:
    """Runs ``argv`` and restarts it with back-off until :meth:`stop`.

    Args:
        argv: the command (default: this interpreter's ``-m src.app worker``).
        min_backoff_s: wait before the first restart.
        max_backoff_s: longest wait between restarts of a worker that keeps dying.
        stable_s: a worker that ran this long resets the back-off.
    """

    def __init__(
        self,
        argv: list[str] | None = None,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        stable_s: float = 60.0,
    ) -> None:
        self.argv = argv or [sys.executable, "-m", "src.app", "worker"]
        self.min_backoff_s, self.max_backoff_s, self.stable_s = min_backoff_s, max_backoff_s, stable_s
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.timeout_s = 60.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-supervisor", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def _loop(self) -> None:
        backoff = self.min_backoff_s
        while not self._stop.is_set():
            started = time.time()
            self.proc = subprocess.Popen(launch_argv(self.argv, python=self.argv[0]))
            while self.proc.poll() is None and not self._stop.is_set():
                self._stop.wait(0.5)
            if self._stop.is_set():
                self._terminate(self.proc)  # from this thread: its end would SIGKILL the worker
                break
            ran = time.time() - started
            backoff = self.min_backoff_s if ran >= self.stable_s else backoff
            log.warning(
                "the worker (pid %d) stopped with exit code %s after %.0f s; starting a new one in %.0f s",
                self.proc.pid,
                self.proc.returncode,
                ran,
                backoff,
            )
            self._stop.wait(backoff)
            backoff = min(self.max_backoff_s, backoff * 2)
            self.restarts += 1

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop supervising and the worker (SIGTERM: it stops its running step and requeues the job)."""
        self.timeout_s = timeout_s
        self._stop.set()
        self._thread.join(timeout_s + 15)

    def _terminate(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
