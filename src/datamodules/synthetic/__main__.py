"""`python -m src.datamodules.synthetic [resolution=256] [n_frames=120] [seed=0] [out_dir=...]`."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.datamodules.synthetic.generate import generate_subject

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../../../conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    gen = OmegaConf.to_container(cfg.generator, resolve=True)
    gen.update(resolution=cfg.resolution, n_frames=cfg.n_frames, seed=cfg.seed)
    headmodel = hydra.utils.instantiate(cfg.headmodel)
    meta = generate_subject(cfg.out_dir, headmodel, config=gen, **gen)
    log.info("wrote %d frames at %dpx to %s", meta["n_frames"], meta["height"], cfg.out_dir)


if __name__ == "__main__":
    main()
