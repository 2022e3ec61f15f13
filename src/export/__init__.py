"""Mesh export of a trained avatar: OBJ + MTL + PNG texture, and GLB (see :mod:`src.export.mesh`).

Command line: ``python -m src.export ckpt_path=<run>/checkpoints/last.ckpt [expression=smile]``
(options in ``conf/export.yaml``).
"""

from src.export.mesh import (
    ExportError,
    default_hidden_regions,
    export_mesh,
    resolve_expression,
    split_uv_seams,
)

__all__ = [
    "ExportError",
    "default_hidden_regions",
    "export_mesh",
    "resolve_expression",
    "split_uv_seams",
]
