"""One comparison table over several trained avatars (e.g. the runs of a Hydra multirun ablation).

Each run's checkpoint is scored on the same held-out frames of its subject with
:func:`src.models.scoring.score_split`, the code of the test loop and of ``evaluate.py ckpt_path=...`` (float
frames, padded and occluded pixels left out, CSIM aligned on the frames' landmarks), so a sweep's table and
a single run's scores agree; the rows are written side by side as ``comparison.md`` and ``comparison.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from src.metrics.evaluate_folder import format_number, write_report
from src.models.loading import load_avatar, split_loader
from src.models.scoring import score_split

log = logging.getLogger(__name__)

# the paper's Table I order: SSIM, PSNR, LPIPS, FID; then CSIM (identity similarity)
COMPARISON_COLUMNS = (
    ("ssim", "SSIM↑", 4), ("psnr", "PSNR↑", 2), ("lpips", "LPIPS↓", 4), ("fid", "FID↓", 2),
    ("csim", "CSIM↑", 4),
)  # fmt: skip


def run_overrides(run_dir: Path) -> list[str]:
    """A run's command-line overrides from ``<run>/.hydra/overrides.yaml`` (empty when absent)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(o) for o in yaml.safe_load(path.read_text(encoding="utf-8")) or []]


def find_runs(sweep_dir: str | Path, checkpoint: str = "last.ckpt") -> dict[str, Path | None]:
    """Runs of a multirun folder: label -> ``<run>/checkpoints/<checkpoint>`` (None when missing).

    A run's label is made of the overrides that tell it apart from the other runs (e.g. ``ablation=no_mrf``);
    the folder name when there are none.

    Raises:
        FileNotFoundError: ``sweep_dir`` is not a folder or holds no runs.
    """
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"sweep_dir {root} is not a folder; pass a multirun folder (logs/train/multiruns/...)"
        )
    subs = sorted((p for p in root.iterdir() if (p / ".hydra").is_dir()), key=_run_order)
    if not subs:
        raise FileNotFoundError(f"{root} holds no Hydra runs (no */.hydra folders); is it a multirun folder?")
    overrides = [run_overrides(p) for p in subs]
    shared = set.intersection(*(set(o) for o in overrides)) if len(subs) > 1 else set()
    runs: dict[str, Path | None] = {}
    for sub, ovr in zip(subs, overrides):
        label = " ".join(o for o in ovr if o not in shared) or sub.name
        ckpt = sub / "checkpoints" / checkpoint
        runs[label] = ckpt if ckpt.is_file() else None
    return runs


def _run_order(p: Path) -> tuple[int, str]:
    return (int(p.name), "") if p.name.isdigit() else (1 << 30, p.name)


def compare_checkpoints(
    runs: Mapping[str, str | Path | None],
    out_dir: str | Path,
    metrics_cfg: Mapping[str, Any],
    split: str = "test",
    batch_size: int = 8,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Score each run as its test loop does; write ``comparison.md`` / ``comparison.json`` into ``out_dir``.

    Args:
        runs: label -> checkpoint path (None: the run left no checkpoint; its row says so).
        out_dir: results folder; each run's frames go to ``out_dir/<i>/{pred,gt,mask}`` (8-bit PNGs to look
            at; the scores are computed on the float frames).
        metrics_cfg: :class:`src.metrics.suite.ImageMetrics` settings (lpips, fid, weights, required).
        split: the data split every run renders.
        batch_size: frames per batch; device: where the avatars run.

    Returns:
        One dict per run: {"run", "checkpoint", and the keys of :meth:`SplitScores.compute` or "error"}.
    """
    out = Path(out_dir)
    rows: list[dict[str, Any]] = []
    for i, (label, ckpt) in enumerate(runs.items()):
        row: dict[str, Any] = {"run": label, "checkpoint": str(ckpt) if ckpt else None}
        if ckpt is None:
            row["error"] = "no checkpoint (the run failed or was stopped before saving)"
            rows.append(row)
            continue
        model, dm = load_avatar(ckpt, map_location=device)
        batches = split_loader(dm, split, batch_size)
        scores = score_split(model, batches, split, dict(metrics_cfg), out_dir=out / str(i), progress=False)
        row.update(scores)
        rows.append(row)
        log.info("scored %s", label)
    write_comparison(rows, out)
    return rows


def format_comparison(rows: list[Mapping[str, Any]]) -> str:
    """Markdown table: one row per run (and a masked row where masks exist), Table I columns."""
    head = "| run | " + " | ".join(c[1] for c in COMPARISON_COLUMNS) + " | frames |"
    lines = [head, "|---|" + "---:|" * (len(COMPARISON_COLUMNS) + 1)]
    for row in rows:
        if "error" in row:
            lines.append(
                f"| {row['run']} | " + " | ".join("n/a" for _ in COMPARISON_COLUMNS) + f" | {row['error']} |"
            )
            continue
        for sfx, tag in (("", ""), ("_masked", " (masked)")):
            if sfx and f"psnr{sfx}" not in row:
                continue
            vals = " | ".join(format_number(row.get(k + sfx), d) for k, _, d in COMPARISON_COLUMNS)
            lines.append(f"| {row['run']}{tag} | {vals} | {row.get('num_frames' + sfx, 'n/a')} |")
    sources = next((r.get("sources") for r in rows if r.get("sources")), None)
    if sources:
        lines += ["", "Weights:"] + [f"- {k}: {v}" for k, v in sources.items()]
    return "\n".join(lines) + "\n"


def write_comparison(
    rows: list[Mapping[str, Any]], out_dir: str | Path, name: str = "comparison"
) -> tuple[Path, Path]:
    """Write ``<name>.md`` and ``<name>.json`` atomically; returns their paths."""
    return write_report(out_dir, name, format_comparison(rows), list(rows))


def compare_sweep(
    sweep_dir: str | Path,
    out_dir: str | Path,
    metrics_cfg: Mapping[str, Any],
    split: str = "test",
    checkpoint: str = "last.ckpt",
    batch_size: int = 8,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Score every run of a multirun folder (:func:`find_runs`) with :func:`compare_checkpoints`, write the
    table into ``out_dir`` and log it. Used by ``evaluate.py sweep_dir=...`` and the ``CompareSweep``
    Hydra callback."""
    runs = find_runs(sweep_dir, checkpoint)
    rows = compare_checkpoints(runs, out_dir, metrics_cfg, split, batch_size, device)
    log.info(
        "comparison of %d runs (%s):\n%s", len(rows), Path(out_dir) / "comparison.md", format_comparison(rows)
    )
    return rows
