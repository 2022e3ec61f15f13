"""Where the Hydra configs are: ``conf/`` of a repository checkout, or the copy inside the installed package.

A wheel ships the repository's ``conf/`` as ``src/conf`` (package data, see pyproject.toml); a checkout
has it beside ``src/``. The entry points pass :data:`CONFIG_DIR` (absolute) to ``hydra.main``, so they
work from any folder.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    """The folder holding ``train.yaml`` etc.: ``src/conf`` when installed, else ``<checkout>/conf``."""
    for cand in (_PKG / "conf", _PKG.parent / "conf"):
        if (cand / "train.yaml").is_file():
            return cand
    raise FileNotFoundError(
        f"no Hydra configs found in {_PKG / 'conf'} or {_PKG.parent / 'conf'}: reinstall the package"
    )


CONFIG_DIR = str(config_dir())
