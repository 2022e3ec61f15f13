"""`python -m src.tracking root=<subject>` or `video=me.mp4` (preprocess first); `score=true` for GT."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.preprocess.__main__ import default_subject_dir
from src.preprocess.pipeline import preprocess_video
from src.tracking.run import track_subject
from src.tracking.score import score_tracking, write_scores
from src.utils.confdir import CONFIG_DIR
from src.utils.task import task_wrapper

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="tracking")
@task_wrapper
def main(cfg: DictConfig) -> None:
    if cfg.root is None and cfg.video is None:
        raise ValueError(
            "give root=<subject folder> or video=<file>; e.g. python -m src.tracking video=me.mp4"
        )
    if cfg.video is not None:
        video = Path(hydra.utils.to_absolute_path(cfg.video))
        root = Path(cfg.root) if cfg.root else default_subject_dir(cfg.paths.data_dir, video)
        preprocess_video(video, root, OmegaConf.to_container(cfg.preprocess, resolve=True))
    else:
        root = Path(hydra.utils.to_absolute_path(cfg.root))
    headmodel = hydra.utils.instantiate(cfg.headmodel)
    info = track_subject(root, headmodel, OmegaConf.to_container(cfg.tracking, resolve=True), force=cfg.force)
    log.info(
        "fit: %.2f px at 256 px, fov %.1f deg, %s", info["landmark_px"], info["fov_deg"], info["timings"]
    )
    if cfg.score:
        scores = score_tracking(root, headmodel)
        path = write_scores(Path(cfg.paths.output_dir) / "tracking_scores.json", scores)
        log.info("scores against ground truth (%s): %s", path, {k: round(v, 3) for k, v in scores.items()})


if __name__ == "__main__":
    main()
