"""StyleGAN2 blocks, generators and discriminator of the image avatar: shapes, loop references, gradients."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split

import math

import pytest
import torch
import torch.nn.functional as F

from src.models.selfie.discriminator import Discriminator
from src.models.selfie.generators import FeatureGenerator, StyleUNet, channels_at
from src.models.selfie.stylegan2 import (
    ConvLayer,
    EqualConv2d,
    EqualLinear,
    MappingNetwork,
    MinibatchStd,
    ModulatedConv2d,
    NoiseInjection,
    PixelNorm,
    ResBlock,
    StyledConv,
    ToRGB,
)

SMALL = {"style_dim": 16, "n_mapping": 2, "channel_base": 128, "channel_max": 16}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_equal_linear_matches_scaled_linear():
    lin = EqualLinear(6, 5, bias_init=0.3, lr_mul=0.1)
    x = torch.randn(4, 6)
    scale = 0.1 / math.sqrt(6)
    ref = x @ (lin.weight * scale).T + lin.bias * 0.1
    assert torch.allclose(lin(x), ref, atol=1e-6)
    assert torch.allclose(lin.bias * 0.1, torch.full((5,), 0.3))  # effective initial bias
    act = EqualLinear(6, 5, activation="lrelu")
    ref = F.leaky_relu(x @ (act.weight / math.sqrt(6)).T + act.bias, 0.2) * math.sqrt(2)
    assert torch.allclose(act(x), ref, atol=1e-6)
    with pytest.raises(ValueError):
        EqualLinear(2, 2, activation="relu")


def test_equal_conv_matches_scaled_conv():
    conv = EqualConv2d(3, 4, 3, stride=2, padding=1)
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(2, 3, 8, 8)
    ref = F.conv2d(x, conv.weight / math.sqrt(3 * 9), conv.bias, stride=2, padding=1)
    assert conv(x).shape == (2, 4, 4, 4)
    assert torch.allclose(conv(x), ref, atol=1e-6)


def _modconv_reference(mc: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Per-sample loop: build each sample's weight explicitly and convolve that sample alone."""
    mod = mc.modulation
    outs = []
    for b in range(x.shape[0]):
        s = style[b] @ (mod.weight * mod.scale).T + mod.bias * mod.lr_mul  # (Cin,)
        w = mc.weight / math.sqrt(mc.in_ch * mc.kernel**2) * s[None, :, None, None]
        if mc.demodulate:
            w = w / torch.sqrt((w**2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        xb = x[b : b + 1]
        if mc.upsample:
            xb = F.interpolate(xb, scale_factor=2, mode="bilinear", align_corners=False)
        ob = F.conv2d(xb, w, padding=mc.kernel // 2)
        if mc.downsample:
            ob = F.avg_pool2d(ob, 2)
        outs.append(ob)
    return torch.cat(outs)


@pytest.mark.parametrize(
    ("up", "down", "demod", "kernel"),
    [(False, False, True, 3), (False, False, False, 3), (True, False, True, 3), (False, True, True, 3),
     (True, False, False, 1), (False, True, False, 3)],
)  # fmt: skip
def test_modulated_conv_matches_loop(up, down, demod, kernel):
    mc = ModulatedConv2d(5, 4, kernel, 7, demodulate=demod, upsample=up, downsample=down)
    torch.nn.init.normal_(mc.modulation.weight)
    x, style = torch.randn(3, 5, 8, 8), torch.randn(3, 7)
    out = mc(x, style)
    side = 16 if up else 4 if down else 8
    assert out.shape == (3, 4, side, side)
    assert torch.allclose(out, _modconv_reference(mc, x, style), atol=1e-5)
    with pytest.raises(ValueError):
        ModulatedConv2d(2, 2, 3, 4, upsample=True, downsample=True)


def test_minibatch_std_matches_loop():
    for B, group, n_ch in [(8, 4, 1), (6, 4, 2), (5, 4, 1), (3, 4, 1), (1, 4, 1)]:
        x = torch.randn(B, 4, 3, 3)
        out = MinibatchStd(group, n_ch)(x)
        assert out.shape == (B, 4 + n_ch, 3, 3)
        assert torch.equal(out[:, :4], x)
        G = min(group, B)
        while B % G:
            G -= 1
        M = B // G
        for i in range(B):
            members = x[[j for j in range(B) if j % M == i % M]]  # (G,C,H,W)
            for f, part in enumerate(members.chunk(n_ch, dim=1)):
                std = (part.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
                assert torch.allclose(out[i, 4 + f], std.expand(3, 3), atol=1e-6), (B, group, n_ch, i, f)
    with pytest.raises(ValueError):
        MinibatchStd(4, 3)(torch.randn(4, 4, 2, 2))


def test_block_shapes():
    x, w = torch.randn(2, 6, 8, 8), torch.randn(2, 10)
    assert StyledConv(6, 5, 3, 10)(x, w).shape == (2, 5, 8, 8)
    assert StyledConv(6, 5, 3, 10, upsample=True)(x, w).shape == (2, 5, 16, 16)
    assert ToRGB(6, 10, upsample=False)(x, w).shape == (2, 3, 8, 8)
    assert ToRGB(6, 10, out_ch=7)(x, w, skip=torch.randn(2, 7, 4, 4)).shape == (2, 7, 8, 8)
    assert NoiseInjection()(x).shape == x.shape
    assert PixelNorm()(x).shape == x.shape
    assert torch.allclose(PixelNorm()(w).pow(2).mean(dim=1), torch.ones(2), atol=1e-5)
    assert MappingNetwork(10, n_layers=3)(w).shape == (2, 10)
    assert ConvLayer(6, 5, 3)(x).shape == (2, 5, 8, 8)
    assert ConvLayer(6, 5, 1, downsample=True, bias=False, activate=False)(x).shape == (2, 5, 4, 4)
    assert ResBlock(6, 5)(x).shape == (2, 5, 4, 4)
    assert ResBlock(6, 5, downsample=False)(x).shape == (2, 5, 8, 8)


def test_noise_injection_and_torgb_skip():
    ni = NoiseInjection()
    x, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 1, 4, 4)
    assert torch.equal(ni(x, noise), x)  # zero-initialised weight
    ni.weight.data.fill_(0.5)
    assert torch.allclose(ni(x, noise), x + 0.5 * noise)
    rgb = ToRGB(3, 5, out_ch=2)
    w, skip = torch.randn(2, 5), torch.randn(2, 2, 2, 2)
    up = F.interpolate(skip, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(rgb(x, w, skip), rgb(x, w) + up, atol=1e-6)


def test_channels_at():
    assert channels_at(4, 4096, 256) == 256
    assert channels_at(128, 4096, 256) == 32
    with pytest.raises(ValueError):
        channels_at(512, 256, 256)


def test_feature_generator_shapes():
    for size in (4, 16, 32):
        g = FeatureGenerator(size, 5, **SMALL)
        assert g(torch.randn(2, 16)).shape == (2, 5, size, size)
        assert g.n_noise == 1 + 2 * int(math.log2(size // 4))
    g = FeatureGenerator(16, 3, min_size=8, **SMALL)
    assert g(torch.randn(1, 16)).shape == (1, 3, 16, 16)
    for bad in (24, 2):
        with pytest.raises(ValueError):
            FeatureGenerator(bad, 3, **SMALL)


def test_style_unet_shapes_and_bad_sizes():
    for size in (32, 64):
        g = StyleUNet(7, 4, size, **SMALL)
        assert g(torch.randn(2, 7, size, size), torch.randn(2, 16)).shape == (2, 4, size, size)
    g = StyleUNet(3, 2, 16, min_size=4, **SMALL)
    assert g(torch.randn(1, 3, 16, 16), torch.randn(1, 16)).shape == (1, 2, 16, 16)
    for bad in (48, 8, 100):
        with pytest.raises(ValueError, match="size"):
            StyleUNet(3, 3, bad, **SMALL)
    g = StyleUNet(3, 3, 32, **SMALL)
    with pytest.raises(ValueError, match="cond"):
        g(torch.randn(1, 3, 64, 64), torch.randn(1, 16))
    with pytest.raises(ValueError, match="cond"):
        g(torch.randn(1, 4, 32, 32), torch.randn(1, 16))


def test_style_unet_larger_sizes_build():
    """Sizes up to 512 build (forward only at a tiny channel count to stay fast)."""
    for size in (128, 256, 512):
        g = StyleUNet(2, 2, size, style_dim=8, n_mapping=1, channel_base=512, channel_max=4)
        assert len(g.encoder) == int(math.log2(size // 8))
    out = g(torch.randn(1, 2, 512, 512), torch.randn(1, 8))
    assert out.shape == (1, 2, 512, 512)


def test_discriminator_shapes():
    for size, in_ch in ((4, 3), (32, 3), (32, 9)):
        d = Discriminator(size, in_ch, channel_base=128, channel_max=16)
        assert d(torch.randn(6, in_ch, size, size)).shape == (6, 1)
    d = Discriminator(16, channel_base=128, channel_max=16, mbstd_channels=2)
    assert d(torch.randn(3, 3, 16, 16)).shape == (3, 1)
    with pytest.raises(ValueError):
        Discriminator(24)
    with pytest.raises(ValueError):
        Discriminator(16, channel_base=128, channel_max=16)(torch.randn(2, 3, 32, 32))


def _assert_all_grads(module: torch.nn.Module, loss: torch.Tensor) -> None:
    loss.backward()
    for name, p in module.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"


def test_gradients_reach_every_parameter():
    g = FeatureGenerator(16, 4, **SMALL)
    _assert_all_grads(g, g(torch.randn(2, 16)).sum())
    u = StyleUNet(5, 3, 32, **SMALL)
    _assert_all_grads(u, u(torch.randn(2, 5, 32, 32), torch.randn(2, 16)).sum())
    d = Discriminator(16, 4, channel_base=128, channel_max=16)
    _assert_all_grads(d, d(torch.randn(4, 4, 16, 16)).sum())


@pytest.mark.parametrize("kind", ["feature", "unet"])
def test_noise_fixed_vs_random(kind):
    if kind == "feature":
        g = FeatureGenerator(16, 3, **SMALL)
        args = (torch.randn(2, 16),)
    else:
        g = StyleUNet(3, 3, 32, **SMALL)
        args = (torch.randn(2, 3, 32, 32), torch.randn(2, 16))
    for m in g.modules():
        if isinstance(m, NoiseInjection):
            m.weight.data.fill_(0.1)  # zero-initialised weights would hide the noise
    with torch.no_grad():
        fixed = [g(*args, randomize_noise=False) for _ in range(2)]
        rand = [g(*args, randomize_noise=True) for _ in range(2)]
        given = [torch.randn(1, 1, *getattr(g, f"noise_{i}").shape[-2:]) for i in range(g.n_noise)]
        explicit = [g(*args, noise=given) for _ in range(2)]
    assert torch.equal(fixed[0], fixed[1])
    assert not torch.allclose(rand[0], rand[1])
    assert torch.equal(explicit[0], explicit[1])
    assert not torch.allclose(explicit[0], fixed[0])
    with pytest.raises(ValueError):
        g(*args, noise=given[:-1])
