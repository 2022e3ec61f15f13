"""Optuna through hydra-optuna-sweeper: a 3-trial study of tiny runs in an SQLite study that resumes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.workflow_helpers import REPO, offline_env, tiny_overrides


def test_search_spaces_compose(tmp_path):
    """Both search spaces compose with their experiment, and every searched key exists in the config."""
    from omegaconf import OmegaConf, open_dict

    from src.utils.confdir import CONFIG_DIR  # registers ${mkdir:...}, as every entry point does
    from tests.helpers import compose_train

    assert CONFIG_DIR

    for exp, search in (("nha_synthetic", "nha_optuna"), ("selfie_synthetic", "selfie_optuna")):
        cfg = compose_train([f"experiment={exp}", f"hparams_search={search}"])
        assert cfg.hydra.sweeper.direction == "maximize" and cfg.optimized_metric == "val/psnr"
        with open_dict(cfg):
            cfg.paths.log_dir = str(tmp_path)
        assert cfg.hydra.sweeper.storage == f"sqlite:///{tmp_path}/optuna/{exp}.db"
        assert (tmp_path / "optuna").is_dir()
        for key in cfg.hydra.sweeper.params:
            assert OmegaConf.select(cfg, key, throw_on_missing=True) is not None, (search, key)


@pytest.mark.slow
def test_three_trial_study(tiny_subject, tmp_path):
    import optuna

    db = tmp_path / "study.db"
    extra = ["logger=csv", "trainer.max_epochs=1", "metrics.lpips=false", "metrics.fid=false",
             "hparams_search=nha_optuna", "experiment=nha_synthetic", "trainer.check_val_every_n_epoch=1",
             "model.stages.texture.steps=4", "model.stages.joint.steps=0", "model.supersample=1",
             "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.n_startup_trials=2",
             f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=tiny",
             f"hydra.sweep.dir={tmp_path / 'sweep'}"]  # fmt: skip
    cmd = [sys.executable, "train.py", "-m", *tiny_overrides(tiny_subject, tmp_path, extra)]
    proc = subprocess.run(cmd, cwd=str(REPO), env=offline_env(tmp_path), capture_output=True, text=True,
                          timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    for t in study.trials:
        print(t.number, t.state.name, round(t.value, 3) if t.value is not None else None, t.params)
    assert len(done) == 3
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(study.best_value)
    assert set(best["best_params"]) == set(study.best_params)
