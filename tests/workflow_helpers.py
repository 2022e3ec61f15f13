"""Helpers for the workflow tests: run train.py as a subprocess on the tiny subject, read wandb run files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import CONF_DIR, TINY_GENERATOR

REPO = Path(CONF_DIR).parent


def tiny_overrides(tiny_subject: Path, tmp_path: Path, extra: list[str]) -> list[str]:
    """Command-line overrides for a fast baseline run on a copy of the tiny subject under ``tmp_path``."""
    data_dir = tmp_path / "data"
    dst = data_dir / "synthetic" / "seed0_48px_12f"
    if not dst.exists():
        shutil.copytree(tiny_subject, dst)
    gen = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    return [
        f"paths.data_dir={data_dir}", *gen, "data.val_frames=2", "data.test_frames=2", "data.batch_size=2",
        "experiment=baseline_synthetic", "callbacks.rich_progress_bar=null", "extras.print_config=false",
        *extra,
    ]  # fmt: skip


def offline_env(home: Path) -> dict[str, str]:
    """The environment for a subprocess with wandb offline and no credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(home), WANDB_MODE="offline", WANDB_SILENT="true", PYTHONUNBUFFERED="1")
    return env


def run_train(args: list[str], env: dict[str, str], timeout: int = 600, **kw) -> subprocess.CompletedProcess:
    """``python train.py *args`` in the repository root; output captured."""
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=str(REPO), env=env, capture_output=True, text=True,
        timeout=timeout, **kw,
    )  # fmt: skip


def read_wandb_run(run_file: Path) -> dict:
    """Read an offline ``.wandb`` file with wandb's own record reader.

    Returns:
        ``{"run_id": str, "name": str, "group": str, "history_keys": set[str], "summary_keys": set[str],
        "resumed": bool}``.
    """
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    ds = datastore.DataStore()
    ds.open_for_scan(str(run_file))
    out = {"run_id": None, "name": None, "group": None, "history_keys": set(), "summary_keys": set()}
    while True:
        data = ds.scan_data()
        if data is None:
            break
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run_id"] = rec.run.run_id
            out["name"] = rec.run.display_name
            out["group"] = rec.run.run_group
        elif kind == "history":
            out["history_keys"].update(item.key or "/".join(item.nested_key) for item in rec.history.item)
        elif kind == "summary":
            out["summary_keys"].update(item.key or "/".join(item.nested_key) for item in rec.summary.update)
    return out
