"""Every experiment and debug config composes with the main config and resolves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import CONF_DIR, compose_train, resolve_job_config

EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
DEBUGS = sorted(p.stem for p in (Path(CONF_DIR) / "debug").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment, tmp_path):
    cfg = compose_train([f"experiment={experiment}"], output_dir=tmp_path)
    cfg = resolve_job_config(cfg)
    for key in ("data", "model", "trainer", "paths", "headmodel"):
        assert cfg.get(key) is not None, f"{experiment}: missing {key}"
    assert "_target_" in cfg.model and "_target_" in cfg.data and "_target_" in cfg.trainer


@pytest.mark.parametrize("debug", DEBUGS)
def test_debug_composes(debug, tmp_path):
    cfg = compose_train([f"debug={debug}"], output_dir=tmp_path)
    cfg = resolve_job_config(cfg)
    assert "csv" in cfg.logger


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp"])
def test_trainer_configs_compose(trainer, tmp_path):
    cfg = compose_train([f"trainer={trainer}"], output_dir=tmp_path)
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"


def test_generate_config_composes(tmp_path):
    cfg = compose_train(["resolution=64", "seed=3"], output_dir=tmp_path, config_name="generate")
    cfg = resolve_job_config(cfg)
    assert cfg.out_dir.endswith("seed3_64px_100f")
