"""Evaluate predicted frames against ground truth: PSNR, SSIM, LPIPS, FID (unmasked and masked).

Usage::

    python evaluate.py pred_dir=renders/test gt_dir=data/subject/test/images [mask_dir=.../masks]
    python evaluate.py ... out_dir=results/subject metrics.required=true
    python evaluate.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt [split=test]
    python evaluate.py sweep_dir=logs/train/multiruns/<time>   # one comparison table over a multirun

With ``ckpt_path`` the avatar renders the held-out frames of the subject it was trained on (its data
config travels in the checkpoint); they are written to ``out_dir/{pred,gt,mask}`` and scored, and where
the subject has ground-truth geometry the mean and Hausdorff vertex distances (face region, mm) are added.

Results go to ``out_dir`` (default: the hydra run dir ``logs/evaluate/runs/<timestamp>``) as ``metrics.md``
and ``metrics.json``; the table is also printed. See :mod:`src.metrics.suite` for the metric definitions.
"""

from __future__ import annotations

from typing import Any

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from src.metrics import evaluate_folders, format_table, write_table
from src.metrics.compare import compare_sweep, format_comparison
from src.models.loading import geometry_scores, load_avatar, render_split
from src.utils.confdir import CONFIG_DIR
from src.utils.task import task_wrapper


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the folders named in ``cfg`` and write the table; returns the results dict."""
    if cfg.get("sweep_dir"):
        return run_sweep(cfg)
    pred_dir, gt_dir, mask_dir = cfg.get("pred_dir"), cfg.get("gt_dir"), cfg.get("mask_dir")
    geometry = None
    if cfg.get("ckpt_path"):
        model, dm = load_avatar(to_absolute_path(cfg.ckpt_path), cfg.get("data_overrides"))
        dirs = render_split(
            model, dm, cfg.split, to_absolute_path(cfg.out_dir), int(cfg.get("batch_size", 8))
        )
        pred_dir, gt_dir, mask_dir = dirs["pred"], dirs["gt"], dirs["mask"]
        geometry = geometry_scores(model, dm, cfg.split)
    elif not pred_dir or not gt_dir:
        raise ValueError(
            "give pred_dir=... and gt_dir=... (folders of frames), or ckpt_path=... (a trained avatar)"
        )
    results = evaluate_folders(
        to_absolute_path(str(pred_dir)),
        to_absolute_path(str(gt_dir)),
        to_absolute_path(str(mask_dir)) if mask_dir else None,
        metrics_cfg=OmegaConf.to_container(cfg.metrics, resolve=True),
        batch_size=int(cfg.get("batch_size", 8)),
        device=cfg.get("device", "cpu"),
    )
    if geometry:
        results.update(geometry)
    md_path, json_path = write_table(results, to_absolute_path(cfg.out_dir))
    print(format_table(results))
    print(f"written: {md_path} {json_path}")
    return results


def run_sweep(cfg: DictConfig) -> dict[str, Any]:
    """Score every run of the multirun folder ``cfg.sweep_dir`` and write ``comparison.md/json``."""
    rows = compare_sweep(
        to_absolute_path(cfg.sweep_dir), to_absolute_path(cfg.out_dir),
        OmegaConf.to_container(cfg.metrics, resolve=True), cfg.split, cfg.get("checkpoint", "last.ckpt"),
        int(cfg.get("batch_size", 8)), cfg.get("device", "cpu"),
    )  # fmt: skip
    print(format_comparison(rows))
    print(f"written: {to_absolute_path(cfg.out_dir)}/comparison.md")
    return {"runs": rows}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
@task_wrapper
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry point (see the module docstring)."""
    return run(cfg)


if __name__ == "__main__":
    main()
