"""Reenact a trained avatar: new expressions, head poses and views, written as MP4 and PNG frames.

Usage::

    python reenact.py ckpt_path=<run>/checkpoints/last.ckpt                  # self: the held-out frames
    python reenact.py ckpt_path=... mode=self frames=0:100                   # any tracked frames
    python reenact.py ckpt_path=... mode=cross source=data/other_subject     # cross-reenactment
    python reenact.py ckpt_path=... mode=preset preset=surprise              # a named expression
    python reenact.py ckpt_path=... mode=preset 'mix={smile: 0.7, clueless: 0.5}' 'pose.yaw=[0,30,-30,0]'
    python reenact.py ckpt_path=... mode=orbit orbit.yaw_range_deg=45 image_size=512

Options are in ``conf/reenact.yaml``; presets in ``conf/presets/ict.yaml``. Output goes to ``out_dir``
(default: the hydra run dir ``logs/reenact/runs/<timestamp>``). See :mod:`src.reenact`.
"""

from __future__ import annotations

from typing import Any

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf, open_dict

from src.models.loading import load_avatar
from src.reenact.pipeline import check_config, reenact
from src.utils.confdir import CONFIG_DIR
from src.utils.task import task_wrapper


def run(cfg: DictConfig) -> dict[str, Any]:
    """Load the checkpoint named in ``cfg``, render the configured reenactment, return its info dict."""
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise ValueError("ckpt_path is required: python reenact.py ckpt_path=<run>/checkpoints/last.ckpt")
    plain = job_config(cfg)
    if plain.get("source"):
        plain["source"] = to_absolute_path(plain["source"])
    check_config(plain)
    model, dm = load_avatar(to_absolute_path(cfg.ckpt_path), plain.get("data_overrides"))
    model = model.to(plain.get("device", "cpu"))
    return reenact(model, dm, plain, to_absolute_path(plain["out_dir"]))


def job_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain containers, without the ``hydra`` node."""
    job = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(job):
        job.pop("hydra", None)
    return OmegaConf.to_container(job, resolve=True)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="reenact")
@task_wrapper
def main(cfg: DictConfig) -> None:
    """Hydra entry point (see the module docstring)."""
    info = run(cfg)
    print(f"written: {info['video']} ({info['n_frames']} frames)")


if __name__ == "__main__":
    main()
