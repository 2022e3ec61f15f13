"""Train an avatar: `python train.py experiment=baseline_synthetic` (see README)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from src.utils.confdir import CONFIG_DIR
from src.utils.instantiate import instantiate_callbacks, instantiate_loggers
from src.utils.io import write_json
from src.utils.resume import resolve_resume
from src.utils.task import task_wrapper

log = logging.getLogger(__name__)


def prepare_subject(datamodule) -> None:
    """Prepare the data module's subject (render, preprocess, track: cached) once.

    Several processes (Lightning's ddp re-runs this script per device; several nodes) may start on the same
    uncached subject: a file lock beside the subject folder lets one prepare it while the others wait and
    then find it cached.
    """
    root = Path(datamodule.root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f".{root.name}.lock")):
        datamodule.prepare_data()


def test_checkpoint(cfg: DictConfig, trainer, ckpt_path: str | None = None) -> str | None:
    """The checkpoint the test loop scores (None: the weights in memory).

    After training, ``test_ckpt: last`` (default) scores the final weights, the state ``last.ckpt`` holds and
    evaluate.py/reenact.py/export load, so the run's ``test/*`` numbers and evaluate.py's agree;
    ``test_ckpt: best`` scores the monitored best epoch (``callbacks.model_checkpoint``), or the final
    weights when nothing is monitored. Without training, ``ckpt_path`` (resolved, e.g. from ``last``) is
    scored.
    """
    if not cfg.get("train"):
        return ckpt_path
    choice = cfg.get("test_ckpt", "last")
    if choice not in ("last", "best"):
        raise ValueError(f"test_ckpt={choice!r}; use last (the final weights) or best (the monitored best)")
    ckpt_cb = getattr(trainer, "checkpoint_callback", None)
    if choice == "best" and ckpt_cb is not None and ckpt_cb.best_model_path:
        return ckpt_cb.best_model_path
    return None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Build data, model, callbacks, loggers and trainer from ``cfg``; fit and test.

    Returns:
        Metrics logged by the trainer (floats), e.g. ``val/psnr`` and ``test/psnr``.
    """
    import pytorch_lightning as pl

    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    ckpt_path = resolve_resume(cfg)  # ckpt_path=last: may switch paths.output_dir to the run's folder
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"), cfg.paths.output_dir)
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    datamodule.trainer = trainer  # as fit would (per-device batch size, loggers for data preparation)
    prepare_subject(datamodule)  # the model takes the subject from the data module in its setup()

    if cfg.get("train"):
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test"):
        trainer.test(model=model, datamodule=datamodule, ckpt_path=test_checkpoint(cfg, trainer, ckpt_path))
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@task_wrapper
def main(cfg: DictConfig) -> float | None:
    if cfg.get("extras", {}).get("print_config"):
        log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=False))
    metrics = train(cfg)
    log.info("final metrics: %s", {k: round(v, 4) for k, v in metrics.items()})
    out = write_json(Path(cfg.paths.output_dir) / "metrics.json", metrics)
    log.info("metrics written to %s", out)
    return metrics.get(cfg.get("optimized_metric", "val/psnr"))


if __name__ == "__main__":
    main()
