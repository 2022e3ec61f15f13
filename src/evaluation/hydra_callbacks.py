"""Hydra callbacks (``hydra.callbacks`` in a config), run by Hydra itself around jobs and sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from src.evaluation.compare import compare_sweep


class CompareSweep(Callback):
    """After a multirun, score every run's checkpoint on the same split and write one comparison table.

    The table (``<sweep dir>/comparison.md`` and ``.json``) comes from
    :func:`src.evaluation.compare.compare_sweep`, the code behind ``python evaluate.py sweep_dir=...``,
    which can redo it later.

    Args:
        metrics: ImageMetrics settings (conf/metrics: lpips, fid, weights paths, required, masked).
        fid: turns FID on or off for the table, over ``metrics.fid`` (None: as in ``metrics``).
        split: the split every run renders (test = held-out frames).
        checkpoint: checkpoint file name inside ``<run>/checkpoints``.
        batch_size: rendering and scoring batch size.
    """

    def __init__(
        self,
        metrics: dict[str, Any],
        split: str = "test",
        checkpoint: str = "last.ckpt",
        batch_size: int = 8,
        fid: bool | None = None,
    ) -> None:
        self.metrics = metrics
        self.fid = fid
        self.split = split
        self.checkpoint = checkpoint
        self.batch_size = batch_size

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        metrics = OmegaConf.to_container(OmegaConf.create(self.metrics), resolve=True)
        if self.fid is not None:
            metrics["fid"] = bool(self.fid)
        compare_sweep(
            sweep_dir, sweep_dir / "comparison", metrics, self.split, self.checkpoint, self.batch_size
        )
