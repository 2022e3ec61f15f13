"""VGG16 perceptual loss: real weights, frozen hidden network, torchvision reference."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import numpy as np
import pytest
import torch
import torchvision
from skimage import data, filters, transform
from torch import nn

from src.losses import PerceptualLoss
from src.losses.perceptual import IMAGENET_MEAN, IMAGENET_STD, vgg16_layer_index
from src.pretrained.vgg16 import VGG16_CONVS, resolve_vgg16
from src.pretrained.weights import WeightsUnavailableError, describe

LAYER_IDX = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}  # torchvision vgg16().features


@pytest.fixture(scope="module")
def vgg_sd():
    try:
        return resolve_vgg16()
    except WeightsUnavailableError as err:
        pytest.skip(f"no real VGG16 weights here: {err}")


@pytest.fixture(scope="module")
def loss(vgg_sd):
    return PerceptualLoss(weights=vgg_sd)


def astronaut(size=64):
    img = transform.resize(data.astronaut(), (size, size), anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(img).permute(2, 0, 1)[None]


def blurred(img, sigma):
    out = filters.gaussian(img[0].permute(1, 2, 0).numpy(), sigma=sigma, channel_axis=-1)
    return torch.from_numpy(out).permute(2, 0, 1)[None].float()


def test_resolution_and_layer_names(vgg_sd):
    assert "vgg16" in describe()
    assert {k for k in vgg_sd} == {f"features.{i}.{t}" for i, _ in VGG16_CONVS for t in ("weight", "bias")}
    names = vgg16_layer_index()
    assert all(names[k] == v for k, v in LAYER_IDX.items())
    assert names["conv1_1"] == 0 and names["pool1"] == 4 and names["relu5_3"] == 29 and names["pool5"] == 30
    with pytest.raises(WeightsUnavailableError, match="not found"):
        resolve_vgg16("/nonexistent/vgg16.pth")


def test_explicit_torchvision_file_round_trip(vgg_sd, tmp_path):
    p = tmp_path / "vgg16-397923af.pth"
    torch.save({**vgg_sd, "classifier.0.weight": torch.zeros(2, 2)}, p)
    sd = resolve_vgg16(p)
    assert sd.keys() == vgg_sd.keys() and all(torch.equal(sd[k], vgg_sd[k]) for k in sd)
    bad = tmp_path / "bad.pth"
    torch.save({"foo": torch.zeros(1)}, bad)
    with pytest.raises(WeightsUnavailableError, match="unrecognised"):
        resolve_vgg16(bad)


def test_frozen_and_hidden_from_parent(loss):
    class Parent(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(2, 2)
            self.perceptual = loss

    parent = Parent().train()
    assert set(parent.state_dict()) == {"head.weight", "head.bias"}
    assert len(list(parent.parameters())) == 2
    assert not loss.training and not loss.net.training  # train() is ignored
    assert not any(p.requires_grad for p in loss.net.parameters())
    parent.double()
    assert loss.net.features[0].weight.dtype == torch.float64
    parent.float()
    assert loss.net.features[0].weight.dtype == torch.float32


def test_zero_identical_and_monotone_in_distortion(loss):
    a = astronaut()
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(a.shape, generator=g)
    assert loss(a, a).item() == 0.0
    values = [loss((a + s * noise).clamp(0, 1), a).item() for s in (0.02, 0.1, 0.3)]
    assert values[0] < values[1] < values[2]
    blur = [loss(blurred(a, s), a).item() for s in (0.7, 1.5, 3.0)]
    assert 0 < blur[0] < blur[1] < blur[2]
    assert loss(a.flip(-1), a).item() > values[0]


def test_matches_torchvision_vgg16(loss, vgg_sd):
    with torch.device("meta"):
        ref = torchvision.models.vgg16()  # weights=None: architecture only, no download
    features = ref.features.to_empty(device="cpu")
    features.load_state_dict({k.removeprefix("features."): v for k, v in vgg_sd.items()}, strict=True)
    features.eval()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def feats(x):
        out, h = {}, (x - mean) / std
        for i, layer in enumerate(features[:23]):
            h = layer(h)
            for name, idx in LAYER_IDX.items():
                if idx == i:
                    out[name] = h.clone()  # torchvision's ReLUs are in-place
        return out

    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 2, 3, 48, 40, generator=g)
    mask = (torch.rand(2, 1, 48, 40, generator=g) > 0.3).float()
    with torch.no_grad():
        for m in (None, mask):
            xi, yi = (x, y) if m is None else (x * m, y * m)
            fx, fy = feats(xi), feats(yi)
            per_image = sum((fx[k] - fy[k]).abs().mean(dim=(1, 2, 3)) for k in LAYER_IDX)
            torch.testing.assert_close(loss(x, y, m, reduction="none"), per_image, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(loss(x, y, m), per_image.mean(), rtol=1e-4, atol=1e-5)


def test_mask_gradients_and_options(vgg_sd, loss):
    g = torch.Generator().manual_seed(2)
    a = astronaut(48)
    mask = torch.zeros(1, 1, 48, 48)
    mask[..., 8:40, 8:40] = 1
    outside = a.clone()
    outside[..., :4, :] = torch.rand(1, 3, 4, 48, generator=g)
    assert loss(outside, a, mask).item() == 0.0
    pred = (a + 0.1 * torch.randn(a.shape, generator=g)).requires_grad_(True)
    loss(pred, a).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    shallow = PerceptualLoss(layers=("relu1_2", "conv2_1"), layer_weights=(1.0, 0.5), weights=vgg_sd)
    assert len(shallow.net.features) == 6 and shallow(pred.detach(), a).item() > 0
    with pytest.raises(ValueError, match="unknown VGG16 layers"):
        PerceptualLoss(layers=("relu9_9",), weights=vgg_sd)
    with pytest.raises(ValueError, match="layer_weights"):
        PerceptualLoss(layer_weights=(1.0,), weights=vgg_sd)
