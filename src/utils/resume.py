"""``ckpt_path=last`` / ``resume=true``: continue a run in its own folder from its newest ``last.ckpt``.

Looked for, in order: ``<output_dir>/checkpoints/last.ckpt`` (a run started again with the same
``hydra.run.dir``, a SLURM requeue of a multirun job), then the newest
``<paths.log_dir>/<task_name>/runs/*/checkpoints/last.ckpt``. When the checkpoint is in another folder
the job switches ``paths.output_dir`` to that folder before anything is built, so checkpoints, images,
metrics and the wandb run (its id is stored beside the checkpoints, see :mod:`src.utils.wandb_run`)
continue where they were. Nothing found: a new run starts (so ``ckpt_path=last`` is safe on a first
submission). Any other ``ckpt_path`` is used as given.

A job that SLURM started again (``SLURM_RESTART_COUNT`` > 0: a requeue after preemption, a time limit,
``scontrol requeue``) and that names no checkpoint resumes from its own ``last.ckpt`` the same way.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

LAST = "last"


def find_last_checkpoint(output_dir: str | Path, runs_dir: str | Path | None = None) -> Path | None:
    """The run's ``last.ckpt``: in ``output_dir`` first, else the newest one under ``runs_dir``."""
    own = Path(output_dir) / "checkpoints" / "last.ckpt"
    if own.is_file():
        return own
    if runs_dir is None or not Path(runs_dir).is_dir():
        return None
    found = sorted(Path(runs_dir).glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def resolve_resume(cfg: DictConfig) -> str | None:
    """The checkpoint to resume ``trainer.fit`` from; switches ``cfg.paths.output_dir`` when needed.

    Args:
        cfg: the job config (``ckpt_path``, ``resume``, ``paths``, ``task_name``); modified in place when
            the run to continue lives in another folder.

    Returns:
        A checkpoint path, or None (start a new run).
    """
    ckpt = cfg.get("ckpt_path")
    output_dir = Path(cfg.paths.output_dir)
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    if ckpt is None and restarts > 0:
        own = find_last_checkpoint(output_dir)
        log.info(
            "resume: SLURM restart %d of this job; %s", restarts, f"from {own}" if own else "no last.ckpt yet"
        )
        return str(own) if own else None
    if not (cfg.get("resume") or ckpt == LAST):
        return ckpt
    runs_dir = Path(cfg.paths.log_dir) / str(cfg.get("task_name", "train")) / "runs"
    last = find_last_checkpoint(output_dir, runs_dir)
    if last is None:
        log.info("resume: no last.ckpt in %s or under %s; starting a new run", output_dir, runs_dir)
        return None
    run_dir = last.parent.parent
    if run_dir.resolve() != output_dir.resolve():
        log.info(
            "resume: continuing the run in %s (this job's folder %s keeps only its log)", run_dir, output_dir
        )
        with open_dict(cfg):
            cfg.paths.output_dir = str(run_dir)
    log.info("resume: from %s", last)
    return str(last)
