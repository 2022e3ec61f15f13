"""Compose the real configs for tests (Hydra's compose API, with the hydra node set)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from src.utils.confdir import CONFIG_DIR

TINY_GENERATOR = {"resolution": 48, "n_frames": 12, "texture_size": 128, "supersample": 2, "batch_size": 6}
CONF_DIR = CONFIG_DIR  # importing src.utils.confdir registers the resolvers the configs use


def synthetic_config(**overrides) -> dict:
    """conf/synthetic/default.yaml with ``overrides``: what ``data.generator`` holds for the same overrides.

    A subject rendered with ``generate_subject(root, hm, config=cfg, **cfg)`` carries the hash the data
    module checks, so a training run on a copy of it uses it as it is (no re-render).
    """
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / "synthetic" / "default.yaml"))
    return {**cfg, **overrides}


def compose_train(
    overrides: list[str], output_dir: Path | None = None, config_name: str = "train"
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with overrides; resolve hydra:runtime paths to ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.runtime.cwd = str(Path(CONF_DIR).parent)
            cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def resolve_job_config(cfg: DictConfig) -> DictConfig:
    """A resolved copy of the job's part of ``cfg`` (the read-only ``hydra`` node left out)."""
    from omegaconf import OmegaConf

    job = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(job):
        job.pop("hydra", None)
    OmegaConf.resolve(job)
    return job


def clip_faces(indices, extra=()):
    """Frames ``indices`` of the real clip single_face.mp4 (then any ``extra`` images), each as an (H,W,3)
    uint8 array with its dlib 68 landmarks (project convention); skips the test when the clip is missing.

    Returns:
        list of (image, landmarks (68,2)) pairs in the order asked for.
    """
    import imageio.v3 as iio
    import numpy as np
    import pytest

    from src.preprocess.landmarks import Dlib68

    path = Path(__file__).resolve().parents[2] / "shared" / "assets" / "videos" / "single_face.mp4"
    if not path.is_file():
        pytest.skip(f"test media {path} missing")
    video = iio.imread(path, plugin="pyav")
    det = Dlib68()
    out = []
    for img in [video[i] for i in indices] + list(extra):
        img = np.ascontiguousarray(img[..., :3])
        lm = det(img)
        assert lm is not None
        out.append((img, lm))
    return out
