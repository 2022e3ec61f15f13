"""Task wrapper for the entry points (train, evaluate, reenact, export, preprocess, tracking).

Every job, whether it succeeds or fails:

- finishes its loggers: ``wandb.finish()`` when a wandb run is open, so that the next job of a multirun
  (same process) starts its own run instead of Lightning re-using the open one;
- logs a failure with its traceback and re-raises it (Hydra then reports it; a multirun stops); a run
  stopped by a signal ends with :class:`src.utils.signals.StopRequestedError` (exit status 1), also when
  Lightning's own SIGTERM handling stopped it first; inside a SLURM job a stopped task exits with status
  128+signal instead, so that submitit leaves a requeued job to run again;
- installs the stop-signal handlers of :mod:`src.utils.signals` (SIGTERM, SIGINT, SLURM's requeue
  signal) so that long loops stop at their next step.

Usage::

    @hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
    @task_wrapper
    def main(cfg: DictConfig) -> float | None: ...
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from omegaconf import DictConfig

from src.utils import signals

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def finish_loggers(failed: bool = False) -> None:
    """Close the process's open wandb run (if wandb was imported and a run is open).

    Args:
        failed: mark the run as failed (exit code 1) instead of finished.
    """
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is None:
        return
    log.info("wandb: finishing run %s", wandb.run.id)
    wandb.finish(exit_code=1 if failed else 0)


STOP_FINISH_TIMEOUT_S = 5.0


def _finish_loggers_safely(failed: bool, timeout: float | None) -> None:
    """:func:`finish_loggers`, never raising; with ``timeout``, given up after that many seconds.

    After a stop signal the wandb service process may be gone (SLURM signals every process of a job), and
    ``wandb.finish()`` would then wait for it until the scheduler's SIGKILL.
    """

    def run() -> None:
        try:
            finish_loggers(failed)
        except Exception:  # never hide the task's own error behind a logger's
            log.exception("closing the loggers failed")

    if timeout is None:
        run()
        return
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        log.warning("wandb did not finish within %.0f s after the stop signal; left unfinished", timeout)


def _exit_as_signalled(signum: int) -> None:
    """Inside a SLURM job, end a stopped task as a process killed by ``signum`` would (status 128+signum),
    without returning to the launcher: submitit would record the stop as the job's result, while a
    preempted or ``scontrol requeue``-d job is about to run again (and then resumes from last.ckpt)."""
    log.warning(
        "SLURM job %s stopped by signal %d: exiting for the scheduler", os.environ["SLURM_JOB_ID"], signum
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + signum)


def task_wrapper(task_func: F) -> F:
    """Wrap a Hydra task function: stop-signal handlers, logged failures, loggers always finished.

    Args:
        task_func: ``f(cfg: DictConfig) -> Any``.

    Returns:
        The wrapped function (same signature; ``__wrapped__`` points at ``task_func`` so that Hydra
        finds its module).
    """

    @functools.wraps(task_func)
    def wrapped(cfg: DictConfig) -> Any:
        signals.install()
        failed = False
        try:
            return task_func(cfg)
        except signals.StopRequestedError as err:
            failed = True
            log.warning("stopped: %s", err)
            raise
        except SystemExit as err:  # Lightning's own SIGTERMException exits with code None (0): not a success
            failed = True
            if signals.stop_requested() is None or err.code:
                raise
            msg = signals.stop_message("training")
            log.warning("stopped: %s", msg)
            raise signals.StopRequestedError(msg) from err
        except BaseException:
            failed = True
            log.exception("task %s failed", getattr(task_func, "__module__", "?"))
            raise
        finally:
            signum = signals.stop_requested()
            _finish_loggers_safely(failed, timeout=STOP_FINISH_TIMEOUT_S if signum is not None else None)
            signals.reset()
            if signum is not None and os.environ.get("SLURM_JOB_ID"):
                _exit_as_signalled(signum)

    return wrapped  # type: ignore[return-value]
