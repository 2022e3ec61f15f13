"""``python -m src.export ckpt_path=<run>/checkpoints/last.ckpt [expression=smile] [texture_size=1024]``.

Writes ``<out_dir>/avatar_<expression>.{obj,mtl,glb,json}`` and ``avatar_<expression>_texture.png``;
``out_dir`` defaults to the hydra run dir ``logs/export/runs/<timestamp>``. Options: ``conf/export.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf, open_dict

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.export.mesh import export_mesh
from src.models.loading import CheckpointError
from src.utils.confdir import CONFIG_DIR
from src.utils.task import task_wrapper


def load_model(ckpt_path: str | Path, map_location: str = "cpu"):
    """The avatar of a train.py checkpoint in eval mode, without its data (export needs none)."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; pass ckpt_path=<run dir>/checkpoints/last.ckpt")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "model_target" not in ckpt:
        raise CheckpointError(f"{path} has no 'model_target'; it was not written by this project's train.py")
    model = hydra.utils.get_class(ckpt["model_target"]).load_from_checkpoint(path, map_location=map_location)
    return model.eval()


def run(cfg: DictConfig) -> dict[str, Any]:
    """Export the checkpoint named in ``cfg``; returns :func:`src.export.mesh.export_mesh`'s result."""
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise ValueError("ckpt_path is required: python -m src.export ckpt_path=<run>/checkpoints/last.ckpt")
    job = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(job):
        job.pop("hydra", None)
    c = OmegaConf.to_container(job, resolve=True)
    model = load_model(to_absolute_path(c["ckpt_path"]), c.get("device", "cpu"))
    return export_mesh(
        model,
        to_absolute_path(c["out_dir"]),
        expression=c.get("expression"),
        texture_size=int(c.get("texture_size", 1024)),
        formats=tuple(c.get("formats") or ("obj", "glb")),
        hidden_regions=c.get("hidden_regions"),
        presets=c.get("presets"),
        name=c.get("name"),
    )


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
@task_wrapper
def main(cfg: DictConfig) -> None:
    """Hydra entry point (see the module docstring)."""
    result = run(cfg)
    print("written:", *(str(result[k]) for k in ("obj", "mtl", "texture", "glb") if k in result))


if __name__ == "__main__":
    main()
