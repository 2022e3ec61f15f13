"""Compatibility shims that must run before torchvision, torchmetrics or Lightning are imported.

Importing this module runs them: the packages whose code loads those libraries (models, metrics, losses,
callbacks, data modules, pretrained weights, the entry points) start with ``import src.utils.compat``, and
``src`` itself imports nothing, so the web app loads no torch.

The registry's torchvision 0.28.0 wheel is a CUDA build. Next to the CPU build of torch its compiled
operators fail to load, and its Python side then refuses to import because the ``torchvision::nms``
schema is missing. Defining the two schemas that the Python side needs lets the pure-Python parts
(model classes, transforms) work; ``torchvision.ops.nms`` itself stays unusable there. On a machine
whose torchvision matches torch the compiled library loads and nothing is defined here.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

_LIBRARY: torch.library.Library | None = None  # kept alive: dropping it removes the definitions


def _torchvision_ops_loadable() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True  # no torchvision: nothing to patch
    pkg_dir = Path(spec.origin).parent
    for lib in sorted(pkg_dir.glob("_C*.so")) + sorted(pkg_dir.glob("_C*.pyd")):
        try:
            torch.ops.load_library(str(lib))
            return True
        except (OSError, RuntimeError):
            return False
    return False


def ensure_torchvision_ops() -> None:
    """Define the ``torchvision::nms``/``qnms`` schemas if torchvision's compiled ops cannot load.

    Idempotent; safe to call in every process (DDP workers import ``src`` too).
    """
    global _LIBRARY
    if _LIBRARY is not None or os.environ.get("AVATAR_SKIP_TV_SHIM") == "1":
        return
    try:
        torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")
        return  # schema exists already
    except RuntimeError:
        pass
    if _torchvision_ops_loadable():
        return
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY = lib


ensure_torchvision_ops()  # importing this module is the way to run it: `import src.utils.compat`
