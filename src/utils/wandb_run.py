"""One wandb run per job: a readable name, the sweep as group, the run id kept beside the checkpoints.

- ``group``: empty in ``conf/logger/wandb.yaml`` means automatic: in a multirun the sweep folder
  (``<task>/<sweep folder name>``), so a sweep's jobs sit together on the dashboard; none otherwise.
- ``name``: empty means automatic: the job's own command-line overrides (``model.lr=0.01,seed=2``,
  paths left out), else the output folder's name.
- ``id``: empty means automatic: a run resumed in the same output folder (``ckpt_path=last``, a SLURM
  requeue) reads ``<output_dir>/checkpoints/wandb_id.txt`` and continues that run (``resume="allow"``);
  a new run writes its id there.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from src.utils.io import atomic_write

ID_FILE = "wandb_id.txt"
_SWEEP_VALUE = re.compile(r"^(range|choice|interval|tag|glob)\(|^[^\[\{]*,")
_SKIP_PREFIXES = ("paths.", "hydra.", "hydra/", "data.generator.", "ckpt_path", "logger", "callbacks.")


def _hydra_cfg() -> DictConfig | None:
    return HydraConfig.get() if HydraConfig.initialized() else None


def job_name(overrides: list[str], fallback: str, only: set[str] | None = None, max_len: int = 120) -> str:
    """A run name from a job's overrides (paths and logger settings left out).

    Args:
        overrides: ``key=value`` strings as Hydra records them (``hydra.overrides.task``).
        fallback: used when nothing is left (e.g. the output folder's name).
        only: when given and non-empty, keep only these keys (a sweep's varying keys) and ``experiment``.
        max_len: longest name returned.

    Returns:
        e.g. ``experiment=nha_synthetic,model.lr=0.01``.
    """
    keep = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key.startswith(_SKIP_PREFIXES) or "/" in o.split("=", 1)[-1]:
            continue
        if only and key not in only and key != "experiment":
            continue
        keep.append(o.lstrip("+~"))
    name = ",".join(keep) or fallback
    return name if len(name) <= max_len else name[: max_len - 3] + "..."


def swept_keys(argv: list[str] | None = None) -> set[str]:
    """Keys a multirun sweeps over: command-line overrides with several values, and an Optuna search space.

    Args:
        argv: the command line (default ``sys.argv[1:]``).
    """
    keys = set()
    for arg in sys.argv[1:] if argv is None else argv:
        if "=" not in arg or arg.startswith("-"):
            continue
        key, value = arg.split("=", 1)
        if _SWEEP_VALUE.search(value):
            keys.add(key.lstrip("+~"))
    hc = _hydra_cfg()
    params = hc.sweeper.get("params") if hc is not None else None
    if params:
        keys.update(str(k) for k in params)
    return keys


def sweep_group() -> str | None:
    """``<task>/<sweep folder>`` in a Hydra multirun, else None."""
    hc = _hydra_cfg()
    if hc is None or str(hc.mode) != "RunMode.MULTIRUN":
        return None
    return f"{hc.job.name}/{Path(hc.sweep.dir).name}"


def stored_id(output_dir: str | Path) -> str | None:
    """The wandb run id kept in ``<output_dir>/checkpoints/wandb_id.txt``, or None."""
    path = Path(output_dir) / "checkpoints" / ID_FILE
    return (path.read_text().strip() or None) if path.is_file() else None


def store_id(output_dir: str | Path, run_id: str) -> Path:
    """Keep ``run_id`` beside the checkpoints (atomic write)."""
    path = Path(output_dir) / "checkpoints" / ID_FILE
    return atomic_write(path, lambda tmp: tmp.write_text(run_id + "\n"))


def wandb_overrides(lg_cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Keyword overrides for a ``WandbLogger`` config: automatic group, name and (resumed) id.

    Args:
        lg_cfg: the logger's config node (its ``group``, ``name`` and ``id`` are kept when set).
        output_dir: the job's output folder.

    Returns:
        Keyword arguments to pass to ``hydra.utils.instantiate`` on top of ``lg_cfg``.
    """
    out: dict[str, Any] = {}
    if not lg_cfg.get("group"):
        group = sweep_group()
        if group:
            out["group"] = group
    if not lg_cfg.get("name"):
        hc = _hydra_cfg()
        overrides = list(hc.overrides.task) if hc is not None else []
        only = swept_keys() if sweep_group() else None
        out["name"] = job_name(overrides, Path(output_dir).name, only)
    if not lg_cfg.get("id"):
        run_id = stored_id(output_dir)
        if run_id:
            out["id"] = run_id
            out["resume"] = "allow"
    return out
