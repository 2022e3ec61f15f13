"""Locate asset files (head models, weights) without ever shipping them in the repo.

Search order for a relative asset name: an explicit path, ``$AVATAR_ASSETS``, then ``../shared/assets``
beside the project root (the layout of this project's CI and development machines).
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class AssetNotFoundError(FileNotFoundError):
    """An asset file could not be found; the message says where we looked and how to fix it."""


def asset_roots() -> list[Path]:
    """Directories searched for assets, in order."""
    roots = []
    env = os.environ.get("AVATAR_ASSETS")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(PROJECT_ROOT.parent / "shared" / "assets")
    return roots


def find_asset(name: str | os.PathLike, hint: str = "") -> Path:
    """Resolve an asset path.

    Args:
        name: absolute path, or a path relative to an asset root (e.g. ``ict_facekit/ict_facekit_light.npz``).
        hint: one sentence telling the user how to obtain the asset, appended to the error.

    Returns:
        The existing file's path.

    Raises:
        AssetNotFoundError: if no candidate exists.
    """
    p = Path(name).expanduser()
    if p.is_absolute() or p.exists():
        if p.exists():
            return p
        raise AssetNotFoundError(f"asset file not found: {p}. {hint}".strip())
    tried = [r / p for r in asset_roots()]
    for cand in tried:
        if cand.exists():
            return cand
    where = ", ".join(str(t) for t in tried)
    raise AssetNotFoundError(
        f"asset '{name}' not found (looked in {where}); "
        f"set AVATAR_ASSETS to the folder that holds it. {hint}".strip()
    )
