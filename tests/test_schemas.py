"""Config schemas (src/utils/schemas.py): unknown keys fail at compose time; coupled values are derived."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError

from src.utils.schemas import SCHEMAS
from tests.helpers import CONF_DIR, compose_train, resolve_job_config

COMPOSE_ERRORS = (ConfigCompositionException, ConfigKeyError)


def _experiment(tmp_path, body: str) -> list[str]:
    """Overrides that select a one-off experiment file ``body`` from a searchpath folder under tmp_path."""
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "probe.yaml").write_text("# @package _global_\n" + body)
    return [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=probe"]


def _message(exc: BaseException) -> str:
    parts = []
    while exc is not None:
        parts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


@pytest.mark.parametrize(
    "body, key",
    [
        ("defaults:\n  - override /model: nha\nmodel:\n  net:\n    backgroud_size: 4\n", "backgroud_size"),
        ("defaults:\n  - override /model: nha\nmodel:\n  heldout_fit: {stpes: 3}\n", "stpes"),
        ("defaults:\n  - override /model: selfie\nmodel:\n  generatr: {size: 64}\n", "generatr"),
        ("defaults:\n  - override /data: synthetic\ndata:\n  val_frame: 2\n", "val_frame"),
        (
            "defaults:\n  - override /data: video\ndata:\n  path: x.mp4\n  preprocess: {resolutoin: 128}\n",
            "resolutoin",
        ),
        (
            "defaults:\n  - override /data: video\ndata:\n  path: x.mp4\n  preprocess: {crop: {scael: 2}}\n",
            "scael",
        ),
    ],
    ids=["model.net", "model.heldout_fit", "model.generator", "data", "preprocess", "preprocess.crop"],
)
def test_unknown_key_in_an_experiment_fails_at_compose_time(tmp_path, body, key):
    with pytest.raises(COMPOSE_ERRORS) as err:
        compose_train(_experiment(tmp_path, body), output_dir=tmp_path)
    assert key in _message(err.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.stages.joint.stepz=3", "stepz"),
        ("data.test_framez=3", "test_framez"),
        ("data.preprocess.occlussion=none", "occlussion"),
    ],
)
def test_unknown_key_on_the_command_line_fails_at_compose_time(tmp_path, override, key):
    base = ["experiment=nha_video", "data.path=x.mp4"]
    with pytest.raises(COMPOSE_ERRORS) as err:
        compose_train([*base, override], output_dir=tmp_path)
    assert key in _message(err.value)


def test_an_experiment_may_add_a_named_stage(tmp_path):
    body = "defaults:\n  - override /model: nha\nmodel:\n  stages:\n"
    body += "    polish: {steps: 5, lr: {texture: 1.0e-4}}\n"
    cfg = resolve_job_config(compose_train(_experiment(tmp_path, body), output_dir=tmp_path))
    assert list(cfg.model.stages)[-1] == "polish" and cfg.model.stages.polish.resolution is None


def test_schemas_hold_no_values_only_keys():
    """Every key a group file writes is in its schema and every schema key is in the file."""
    from omegaconf import OmegaConf

    for name, schema in SCHEMAS.items():
        yaml = OmegaConf.load(f"{CONF_DIR}/{name}.yaml")
        entries = [e if isinstance(e, str) else next(iter(e)) for e in yaml.get("defaults", [])]
        placed = {e.split("@")[1].split(":")[0] for e in entries if "@" in e and "_here_" not in e}
        written = set(yaml) - {"defaults"} | placed  # nodes the defaults list fills count as written
        declared = set(OmegaConf.structured(schema))
        assert written == declared, (name, written ^ declared)


@pytest.mark.parametrize("experiment", ["nha_video", "selfie_video", "baseline_video"])
def test_composed_configs_pickle(tmp_path, experiment):
    """Lightning pickles the model's hyper-parameters: nodes typed by a schema must survive it."""
    import pickle

    cfg = compose_train([f"experiment={experiment}", "data.path=x.mp4"], output_dir=tmp_path)
    for node in (cfg.model, cfg.data):
        assert pickle.loads(pickle.dumps(node)) == node


def test_background_plate_holdout_follows_the_test_frames(tmp_path):
    cfg = compose_train(
        ["experiment=nha_video", "data.path=x.mp4", "data.test_frames=10"], output_dir=tmp_path
    )
    assert resolve_job_config(cfg).data.preprocess.background_holdout == 10
