"""The mesh avatar over a video's background plate, and pixels/landmarks that count nowhere (padded crop,
occluders): the plate warp against OpenCV, the plate behind the head, the loss blind to invalid pixels."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import dataclasses

import cv2
import hydra
import numpy as np
import pytest
import torch

from src.core.outputs import Batch, Out
from src.core.streams import warp_plate
from tests.helpers import compose_train
from tests.test_nha import _overrides


def test_warp_plate_matches_opencv():
    rng = np.random.default_rng(0)
    img = (rng.random((20, 24, 3)) * 255).astype(np.uint8)
    motions = [
        np.array([[1.01, 0.02, 1.7], [-0.015, 0.99, -2.3]]),
        np.eye(2, 3),
        np.array([[1, 0, -3.5], [0, 1, 0.25]]),
    ]
    got = warp_plate(
        torch.from_numpy(img).permute(2, 0, 1).float() / 255,
        torch.tensor(np.stack(motions), dtype=torch.float32),
    )
    for A, g in zip(motions, got):
        ref = cv2.warpAffine(img, A, (24, 20), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        err = np.abs(ref.astype(np.float32) / 255 - g.permute(1, 2, 0).numpy())
        # OpenCV interpolates with 1/32-pixel fixed-point weights and rounds to uint8
        assert err.mean() < 1.5 / 255 and err.max() < 6 / 255
    torch.testing.assert_close(got[1], torch.from_numpy(img).permute(2, 0, 1).float() / 255)


@pytest.fixture()
def nha_with_plate(tiny_subject, tmp_path):
    cfg = compose_train(_overrides(tiny_subject, tmp_path, ["experiment=nha_synthetic"]), output_dir=tmp_path)
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    dm.prepare_data()
    subject = dm.subject()
    h, w = subject.image_size
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    plate = torch.stack([xx, yy, 0.5 + 0.3 * torch.sin(6 * xx)])  # (3,H,W)
    motion = torch.eye(2, 3).repeat(subject.n_frames, 1, 1)
    motion[:, 0, 2] = torch.arange(subject.n_frames) * 0.5  # the camera drifts half a pixel per frame
    model = hydra.utils.instantiate(cfg.model)
    model.attach(dataclasses.replace(subject, background=plate, background_motion=motion))
    return model, dm, plate, motion


def test_the_head_is_rendered_over_the_plate(nha_with_plate):
    model, _, plate, motion = nha_with_plate
    index = torch.tensor([0, 5])
    with torch.no_grad():
        out = model(index)
    expected = warp_plate(plate, motion[index])
    outside = out[Out.COVERAGE] == 0
    assert outside.float().mean() > 0.2
    diff = (out[Out.IMAGE] - expected).abs()[outside.expand(-1, 3, -1, -1)]
    assert diff.max() < 1e-5  # the learned residual starts at zero
    cams = model.frames.cameras_for(index, model.image_size)
    t = model.tables
    e, r, tr = t.expression[index], t.rotation[index], t.translation[index]
    rendered = model.render_params(t.identity, e, r, tr, cams)
    unmoved = (rendered[Out.IMAGE] - plate).abs()[(rendered[Out.COVERAGE] == 0).expand(-1, 3, -1, -1)]
    assert unmoved.max() < 1e-5  # reenactment shows the plate as the first frame saw it


def test_loss_ignores_invalid_pixels_and_landmarks(nha_with_plate):
    model, dm, _, _ = nha_with_plate
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    b, _, h, w = batch[Batch.IMAGE].shape
    valid = torch.ones(b, 1, h, w)
    valid[..., : w // 4] = 0  # a padded strip on the left
    batch[Batch.VALID] = valid
    with torch.no_grad():
        out = model(batch[Batch.INDEX], soft_alpha=True)
        weights = {**model.stage_weights(), "landmarks": 1.0, "silhouette": 1.0}
        _, terms = model.loss_fn(batch, out, model.frame_state(batch[Batch.INDEX]), weights)
        spoiled = dict(batch)
        spoiled[Batch.IMAGE] = batch[Batch.IMAGE].clone()
        spoiled[Batch.IMAGE][..., : w // 4] = 1 - spoiled[Batch.IMAGE][..., : w // 4]
        spoiled[Batch.MASK] = batch[Batch.MASK].clone()
        spoiled[Batch.MASK][..., : w // 4] = 1.0
        lm = batch[Batch.LANDMARKS68].clone()
        left = lm[..., 0] < w // 4
        lm[left] += 5.0  # landmarks on padded pixels are moved: they must not count
        spoiled[Batch.LANDMARKS68] = lm
        _, terms2 = model.loss_fn(spoiled, out, model.frame_state(batch[Batch.INDEX]), weights)
    for k in ("rgb_l1", "silhouette", "landmarks"):
        assert torch.allclose(terms[k], terms2[k], atol=1e-6), k
    batch[Batch.VALID] = torch.ones(b, 1, h, w)
    with torch.no_grad():
        _, full = model.loss_fn(
            spoiled | {Batch.VALID: batch[Batch.VALID]}, out, model.frame_state(batch[Batch.INDEX]), weights
        )
    assert full["rgb_l1"] > terms["rgb_l1"] + 1e-3  # without the mask the spoiled strip does count
