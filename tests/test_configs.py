"""Every experiment and debug config composes with the main config and resolves."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.models.nha.losses import TERMS
from src.models.nha.module import GROUPS
from src.models.nha.stages import parse_stages
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


MODELS = sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml"))


@pytest.mark.parametrize("model", MODELS)
def test_model_choice_carries_its_loss(model, tmp_path):
    """`model=<m>` alone selects conf/loss/<m>.yaml (train.yaml: `loss: ${model}`); `loss=` overrides it."""
    assert (Path(CONF_DIR) / "loss" / f"{model}.yaml").exists()
    cfg = compose_train([f"model={model}"], output_dir=tmp_path)
    assert cfg.hydra.runtime.choices.loss == model
    assert cfg.loss == compose_train([f"model={model}", f"loss={model}"]).loss
    other = next(m for m in MODELS if m != model)
    assert compose_train([f"model={model}", f"loss={other}"]).loss == compose_train([f"model={other}"]).loss


def test_loss_paths_users_know_still_work(tmp_path):
    """README / docs/selfie.md command lines: experiment + ablation + loss.* overrides."""
    cfg = compose_train(["experiment=selfie_synthetic", "loss.weights.cos=0", "loss.face_id.weights=/w.pkl"])
    assert cfg.loss.weights.cos == 0 and cfg.loss.weights.adv == 0.02
    assert cfg.loss.face_id.weights == "/w.pkl"
    assert compose_train(["experiment=selfie_synthetic", "ablation=full"]).loss.weights.cos == 1.0
    selfie = compose_train(["model=selfie"]).loss
    assert selfie.weights.cos == 1.0 and selfie.face_id.network == "dlib"  # L_cos on, dlib's real weights
    nha = compose_train(["experiment=nha_video", "data.path=me.mp4"])
    assert nha.hydra.runtime.choices.loss == "nha" and nha.loss.weights.normals == 0.0


def test_region_lists_and_sizes_come_from_the_head_model_and_data():
    """Model configs name no head-model regions and no image size: null means the head model's own lists
    (``HeadModel.hidden_regions`` / ``offset_regions``) and the data's image side."""
    from src.headmodel.regions import ICT_REGION_LABELS

    for model in MODELS:
        cfg = compose_train([f"model={model}"]).model
        lists = cfg.net if "net" in cfg else cfg
        assert lists.hidden_regions is None and lists.get("offset_regions") is None, model
        text = (Path(CONF_DIR) / "model" / f"{model}.yaml").read_text()
        named = [r for r in ICT_REGION_LABELS if r not in ("face", "teeth") and r in text]
        assert not named, f"conf/model/{model}.yaml names regions {named}"
    assert compose_train(["model=selfie"]).model.generator.size is None
    for experiment in EXPERIMENTS:
        text = (Path(CONF_DIR) / "experiment" / f"{experiment}.yaml").read_text()
        assert "override /loss" not in text and "generator:\n    size" not in text, experiment


def test_hidden_region_names_live_in_the_head_models():
    """ICT's overlay / eyelash region names appear in src/ only under src/headmodel (one place)."""
    root = Path(CONF_DIR).parent / "src"
    names = ("lacrimal_fluid", "eye_blend", "eye_occlusion", "eyelashes_")
    found = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.parent.name != "headmodel" and any(n in p.read_text() for n in names)
    ]
    assert not found, f"region names hard-coded outside src/headmodel: {found}"


def test_parameter_refinement_follows_the_parameters_quality(tmp_path):
    """Exact synthetic parameters are refined by no stage; perturbed (noisy) or tracked (video) ones are
    refined in the joint stage, which trains the avatar jointly."""
    refined = ("identity", "expression", "pose")

    def stage_lrs(experiment: str, *extra: str) -> dict[str, dict]:
        cfg = compose_train([f"experiment={experiment}", *extra], output_dir=tmp_path)
        stages = parse_stages(cfg.model.stages, GROUPS, set(TERMS), tuple(cfg.model.frozen))
        return {s.name: s.lr for s in stages}

    exact = stage_lrs("nha_synthetic")
    assert exact["joint"]["texture"] > 0
    assert not any(g in lr for lr in exact.values() for g in refined)
    for lrs in (stage_lrs("nha_synthetic_noisy"), stage_lrs("nha_video", "data.path=me.mp4")):
        assert all(lrs["joint"][g] > 0 for g in refined)
