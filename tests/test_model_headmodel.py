"""Every avatar family x every head model, and every experiment file, through a fast_dev_run.

Head models: ICT-FaceKit, ICT on a subdivided mesh, and FLAME from a random FLAME-format file (as in
tests/test_headmodel_flame.py). The synthetic subject is rendered with ICT, so its ground-truth parameters
fit ICT only; for FLAME the subject is first tracked with that FLAME model (src.tracking, the route a real
video takes) and trained on ``data.params_source=tracking``. FLAME on ICT's parameters stops with a
one-line error (tested below). The image avatar needs power-of-two frames, so the model x head-model runs
use a 32 px subject; the experiment runs use the 48 px ``tiny_subject``, the image-avatar ones 32 px.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.cli.train import train
from src.headmodel.base import HeadModelError
from tests.helpers import CONF_DIR, TINY_GENERATOR, compose_train, synthetic_config
from tests.test_headmodel_flame import _embeddings, _flame_dict

MODELS = ("nha", "selfie", "vertex_color")
EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
TINY32 = {"resolution": 32, "n_frames": 8, "texture_size": 128, "supersample": 1, "batch_size": 8}
# landmark tracking of the 8 frames, short: a smoke run (the FLAME file is random)
TRACK_FAST = {"steps_rigid": 20, "steps": 40, "focal": {"search_steps": [10, 20], "search_frames": 4},
              "overlay": {"enabled": False}}  # fmt: skip
# the subdivided mesh (105,569 vertices) is the slow one; experiment=nha_synthetic_subdivided runs by default
HEADMODELS = ("ict", pytest.param("ict_subdivided", marks=pytest.mark.slow), "flame")


@pytest.fixture(scope="module")
def flame_files(tmp_path_factory) -> dict[str, Path]:
    """A random FLAME-format model (100 vertices, 300 + 100 blendshapes) and its 68-point embedding."""
    d = tmp_path_factory.mktemp("flame_model")
    with open(d / "FLAME.pkl", "wb") as fh:
        pickle.dump(_flame_dict(), fh, protocol=2)
    np.save(d / "landmark_embedding.npy", _embeddings(np.random.default_rng(1))[1])
    return {"path": d / "FLAME.pkl", "landmark_embedding": d / "landmark_embedding.npy"}


@pytest.fixture(scope="module")
def subject32(tmp_path_factory, ict_model, flame_files) -> Path:
    """An 8-frame, 32 px synthetic subject (rendered with ICT), also tracked with the random FLAME model:
    tracking.npz has FLAME's parameter sizes, ground_truth/params.npz stays ICT's."""
    from src.datamodules.synthetic.generate import generate_subject
    from src.headmodel.flame import FLAMEHeadModel
    from src.tracking import track_subject

    root = tmp_path_factory.mktemp("mh") / "subject"
    cfg = synthetic_config(**TINY32)  # the data module's hash: training runs use it as it is
    generate_subject(root, ict_model, config=cfg, **cfg)
    track_subject(root, FLAMEHeadModel(**flame_files), TRACK_FAST)
    return root


def data_overrides(subject: Path, tmp_path: Path, generator: dict) -> list[str]:
    """Point the synthetic data config at a copy of ``subject`` (nothing is rendered), tiny splits, one
    batch of each loop (``++trainer.fast_dev_run=true``), CSV logging."""
    data_dir = tmp_path / "data"
    name = f"seed0_{generator['resolution']}px_{generator['n_frames']}f"
    shutil.copytree(subject, data_dir / "synthetic" / name)
    gen = [f"data.generator.{k}={v}" for k, v in generator.items()]
    return [
        f"paths.data_dir={data_dir}", *gen, "data.val_frames=2", "data.test_frames=2", "data.batch_size=2",
        "metrics.fid=false", "logger=csv", "++trainer.fast_dev_run=true",
    ]  # fmt: skip


def headmodel_overrides(headmodel: str, flame_files: dict[str, Path]) -> list[str]:
    """``headmodel=<h>``; FLAME from the random files, trained on the subject's FLAME tracking."""
    if headmodel != "flame":
        return [f"headmodel={headmodel}"]
    files = [f"headmodel.{k}={v}" for k, v in flame_files.items()]
    return ["headmodel=flame", *files, "data.params_source=tracking"]


def test_head_models_declare_their_region_lists(ict_model, flame_files, tmp_path):
    """hidden_regions / offset_regions / region_labels per head model; avatars resolve null from them."""
    import torch

    from src.headmodel import FLAMEHeadModel, SubdividedHeadModel
    from src.headmodel.regions import FLAME_REGION_LABELS, FOREGROUND_LABELS, ICT_HIDDEN_REGIONS
    from src.losses import region_label_matrix
    from src.models.nha.avatar_net import NHARenderer
    from src.models.selfie.conditioning import HeadConditioner
    from src.render import MeshRenderer

    masks = {"lips": np.arange(10, 20), "left_eyeball": np.arange(30, 35), "beard": np.arange(80, 90)}
    with open(tmp_path / "FLAME_masks.pkl", "wb") as fh:
        pickle.dump(masks, fh, protocol=2)
    flame, sub = FLAMEHeadModel(**flame_files), SubdividedHeadModel(ict_model, levels=0)
    flame_masks = FLAMEHeadModel(**flame_files, masks_path=tmp_path / "FLAME_masks.pkl")
    assert ict_model.hidden_regions == list(ICT_HIDDEN_REGIONS)
    assert ict_model.offset_regions == ["face", "head_neck"]
    assert flame.hidden_regions == [] and flame.offset_regions == ["head"]
    assert flame_masks.region_labels["lips"] == FLAME_REGION_LABELS["lips"]
    assert flame_masks.region_labels["beard"] == flame_masks.region_labels["head"] == FOREGROUND_LABELS
    assert (sub.hidden_regions, sub.offset_regions) == (ict_model.hidden_regions, ict_model.offset_regions)
    for hm in (ict_model, flame, flame_masks, sub):  # every region has labels the loss knows
        assert region_label_matrix(hm.region_names, hm.region_labels).any(1).all()
    # null lists in the model configs resolve to these
    n_hidden = int(ict_model.region_face_mask(ict_model.hidden_regions).sum())
    assert HeadConditioner(ict_model, MeshRenderer()).faces.shape[0] == ict_model.faces.shape[0] - n_hidden
    assert HeadConditioner(ict_model, MeshRenderer(), []).faces.shape[0] == ict_model.faces.shape[0]
    nets = {"geometry": {"hidden": 8, "layers": 1}, "texture": {"hidden": 8, "layers": 1},
            "mapping": {"width": 8, "depth": 1}, "uv_embedding": {"channels": 2, "size": 4},
            "pos_freqs": 2, "background_size": 4, "background_residual": 2.0}  # fmt: skip
    net = NHARenderer(flame_masks, MeshRenderer(), **nets)
    assert net.faces.shape == flame.faces.shape and torch.equal(net.active, torch.arange(100))
    assert net.region_allowed.shape == (4, 9)
    with pytest.raises(HeadModelError, match="unknown regions"):
        NHARenderer(flame, MeshRenderer(), **nets, offset_regions=["face", "head_neck"])


@pytest.mark.integration
@pytest.mark.parametrize("headmodel", HEADMODELS)
@pytest.mark.parametrize("model", MODELS)
def test_model_x_headmodel_fast_dev_run(model, headmodel, subject32, flame_files, tmp_path):
    """`python train.py model=<m> headmodel=<h> ++trainer.fast_dev_run=true` with every other default."""
    overrides = [*data_overrides(subject32, tmp_path, TINY32), f"model={model}"]
    cfg = compose_train([*overrides, *headmodel_overrides(headmodel, flame_files)], output_dir=tmp_path)
    assert cfg.hydra.runtime.choices.loss == model  # the model choice carries its loss
    metrics = train(cfg)
    assert np.isfinite(float(metrics["train/loss"])) and "test/psnr" in metrics
    if model == "nha":  # geometry is scored only against ground truth of the same head model
        assert ("test/geometry_mean_mm" in metrics) == (headmodel != "flame")


def test_flame_on_ict_parameters_says_so(subject32, flame_files, tmp_path):
    """The subject's ground-truth parameters are ICT's: FLAME refuses them in one line naming the fix."""
    overrides = [
        *data_overrides(subject32, tmp_path, TINY32), "model=vertex_color",
        *headmodel_overrides("flame", flame_files)[:-1], "data.params_source=ground_truth",
    ]  # fmt: skip
    match = r"do not fit FLAMEHeadModel: expression 53 \(needs 50\), joint_pose 0 \(needs 12\).*src.tracking"
    with pytest.raises(HeadModelError, match=match):
        train(compose_train(overrides, output_dir=tmp_path))


@pytest.mark.integration
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run(experiment, tiny_subject, subject32, tmp_path):
    """`python train.py experiment=<e> ++trainer.fast_dev_run=true` for every file in conf/experiment."""
    if experiment.endswith("_video"):
        pytest.skip("needs a video: tests/test_tracking_video.py::test_train_on_a_video runs it on a clip")
    selfie = experiment.startswith("selfie_")
    subject, generator = (subject32, TINY32) if selfie else (tiny_subject, TINY_GENERATOR)
    cfg = compose_train(
        [*data_overrides(subject, tmp_path, generator), f"experiment={experiment}"], output_dir=tmp_path
    )
    metrics = train(cfg)
    assert np.isfinite(float(metrics["train/loss"])) and metrics["test/psnr"] > 5
    if experiment.startswith("nha_"):  # the ICT subject's ground truth scores the mesh avatar's geometry
        assert "test/geometry_mean_mm" in metrics
