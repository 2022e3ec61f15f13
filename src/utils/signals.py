"""Stop requests from signals: a flag set by the handler, checked by every long loop.

SIGTERM (``kill``, ``scancel``, a web-app cancel), SIGINT (Ctrl-C) and SLURM's requeue signals (SIGUSR1,
Lightning's default, and SIGUSR2, submitit's) set a process-wide flag; loops call :func:`check_stop` at
each step (training batches through :class:`src.callbacks.signals.StopOnSignal`, the held-out fit,
tracking fits, preprocessing's frame loop, reenact's render loop), which raises :class:`StopRequestedError`.
The newest ``last.ckpt`` (written at the end of every training epoch) is the resume point.

A second Ctrl-C raises ``KeyboardInterrupt`` at once. Handlers are installed only from the main thread;
a handler already installed by someone else for SIGUSR1/SIGUSR2 (Lightning's SLURM auto-requeue,
submitit's requeue) is kept and called after the flag is set.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)

_received: int | None = None
_original: dict[int, Any] = {}  # handlers found by install(), given back by reset()


class StopRequestedError(RuntimeError):
    """Raised by :func:`check_stop` once a stop signal was received."""


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    if signum == signal.SIGINT and _received == signal.SIGINT:
        raise KeyboardInterrupt
    _received = signum
    log.warning("received %s: stopping at the next step", signal.Signals(signum).name)
    prev = _original.get(signum)
    if signum in (signal.SIGUSR1, signal.SIGUSR2) and callable(prev):
        prev(signum, frame)


def install(signums: tuple[int, ...] = STOP_SIGNALS) -> bool:
    """Route ``signums`` to the stop flag (idempotent; a no-op outside the main thread).

    Returns:
        True if a handler was installed now (False: already installed, or not the main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    changed = False
    for s in signums:
        current = signal.getsignal(s)
        if current is _handler:
            continue
        _original[s] = current
        signal.signal(s, _handler)
        changed = True
    return changed


def reset() -> None:
    """Clear the flag and give the signals back to the handlers found by :func:`install`."""
    global _received
    _received = None
    if threading.current_thread() is not threading.main_thread():
        return
    for s, prev in list(_original.items()):
        if signal.getsignal(s) is _handler:
            signal.signal(s, prev if prev is not None else signal.SIG_DFL)
        del _original[s]


def stop_requested() -> int | None:
    """The number of the stop signal received, or None."""
    return _received


def request_stop(signum: int = signal.SIGTERM) -> None:
    """Set the flag as if ``signum`` had been received (for callers that learn of a stop otherwise)."""
    global _received
    _received = signum


def check_stop(where: str = "") -> None:
    """Raise :class:`StopRequestedError` if a stop signal was received.

    Args:
        where: the loop calling, named in the message (e.g. ``"tracking (rigid fit)"``).
    """
    if _received is not None:
        raise StopRequestedError(stop_message(where))


def stop_message(where: str = "") -> str:
    """The one-line message of a stop: which signal, where, and how to resume."""
    name = signal.Signals(_received).name if _received is not None else "stop signal"
    return (
        f"{name} received{' during ' + where if where else ''}: stopped; resume training with "
        "ckpt_path=last (the newest checkpoints/last.ckpt of the run)"
    )
