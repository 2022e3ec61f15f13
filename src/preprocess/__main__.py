"""`python -m src.preprocess video=me.mp4 [out_dir=...] [preprocess.resolution=512] ...`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.preprocess.pipeline import preprocess_video
from src.utils.confdir import CONFIG_DIR
from src.utils.task import task_wrapper

log = logging.getLogger(__name__)


def default_subject_dir(data_dir: str | Path, video: str | Path) -> Path:
    """``<data_dir>/videos/<video file stem>``: where a video's subject layout goes by default."""
    return Path(data_dir) / "videos" / Path(video).stem


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="preprocess")
@task_wrapper
def main(cfg: DictConfig) -> None:
    video = Path(hydra.utils.to_absolute_path(cfg.video))
    out = Path(cfg.out_dir) if cfg.out_dir else default_subject_dir(cfg.paths.data_dir, video)
    meta = preprocess_video(video, out, OmegaConf.to_container(cfg.preprocess, resolve=True))
    log.info(
        "%d of %d frames usable (%s landmarks), %.3f s/frame; subject in %s",
        meta["n_frames"], meta["n_decoded"], meta["landmarks68_source"], meta["timings"]["s_per_frame"], out,
    )  # fmt: skip


if __name__ == "__main__":
    main()
