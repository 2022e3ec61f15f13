"""Where the Hydra configs are: ``conf/`` of a repository checkout, or the copy inside the installed package.

A wheel ships the repository's ``conf/`` as ``src/conf`` (package data, see pyproject.toml); a checkout
has it beside ``src/``. The entry points pass :data:`CONFIG_DIR` (absolute) to ``hydra.main``, so they
work from any folder. Importing this module also registers the config resolvers (``${mkdir:...}``,
``${stage_steps:...}``) and the group schemas of :mod:`src.utils.schemas`.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from src.utils.schemas import register_schemas

_PKG = Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    """The folder holding ``train.yaml`` etc.: ``src/conf`` when installed, else ``<checkout>/conf``."""
    for cand in (_PKG / "conf", _PKG.parent / "conf"):
        if (cand / "train.yaml").is_file():
            return cand
    raise FileNotFoundError(
        f"no Hydra configs found in {_PKG / 'conf'} or {_PKG.parent / 'conf'}: reinstall the package"
    )


def ensure_dir(path: str) -> str:
    """The ``${mkdir:<path>}`` resolver: create the folder (for files a library will not create, e.g. an
    Optuna SQLite study), return the path unchanged."""
    os.makedirs(path, exist_ok=True)
    return path


def stage_steps(stages) -> int:
    """The ``${stage_steps:${model.stages}}`` resolver: the sum of a stages config's ``steps`` (so
    ``trainer.max_steps`` is derived from the schedule instead of copied)."""
    return sum(int(s["steps"]) for s in stages.values())


CONFIG_DIR = str(config_dir())
register_schemas()  # the group files' schemas (src/utils/schemas.py)
if not OmegaConf.has_resolver("mkdir"):
    OmegaConf.register_new_resolver("mkdir", ensure_dir)
if not OmegaConf.has_resolver("stage_steps"):
    OmegaConf.register_new_resolver("stage_steps", stage_steps)
