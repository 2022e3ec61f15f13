"""The mesh avatar's landmark term on FaceMesh's 478 points (``loss.landmark_points=dense``)."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import hydra
import pytest
import torch

from src.core.outputs import Batch, Out
from tests.helpers import compose_train
from tests.test_nha import _overrides


def test_dense_landmark_term_uses_the_478_points(tiny_subject, tmp_path):
    over = ["experiment=nha_synthetic", "loss.landmark_points=dense"]
    cfg = compose_train(_overrides(tiny_subject, tmp_path, over), output_dir=tmp_path)
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    dm.prepare_data()
    dm.setup()
    model = hydra.utils.instantiate(cfg.model)
    model.attach(dm.subject())
    batch = next(iter(dm.train_dataloader()))
    assert Batch.LANDMARKS478 not in batch  # the synthetic subject has no FaceMesh points
    weights = {**model.stage_weights(), "landmarks": 1.0}
    index = batch[Batch.INDEX]
    with torch.no_grad():
        out = model(index, soft_alpha=True)
        with pytest.raises(ValueError, match="landmarks478.*loss.landmark_points=68"):
            model.loss_fn(batch, out, model.frame_state(index), weights)
        cams = model.frames.cameras_for(index, model.image_size)
        own = cams.project(model.headmodel.landmarks478(out[Out.VERTICES]))
        _, exact = model.loss_fn(batch | {Batch.LANDMARKS478: own}, out, model.frame_state(index), weights)
        moved = own.clone()
        moved[:, 468:] += 2.0  # only the irises are off
        _, off = model.loss_fn(batch | {Batch.LANDMARKS478: moved}, out, model.frame_state(index), weights)
    assert exact["landmarks"] < 1e-8 < off["landmarks"]
    assert model.loss_fn.landmark_weights.shape == (478,)
