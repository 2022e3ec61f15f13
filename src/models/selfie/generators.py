"""Generators of the image avatar: a StyleGAN2 feature generator and StyleAvatar's StyleUNet.

* :class:`FeatureGenerator` — a StyleGAN2 generator from a learned constant to a feature map of any
  channel count; used for the neural texture in UV space (G_fa) and the background feature map (G_b).
* :class:`StyleUNet` — StyleAvatar's G_style: a convolutional encoder of the conditioning image and a
  style-modulated decoder that takes the encoder's feature of every scale through skip connections.

Both own their mapping network (forward takes z, not w) and use the same w at every layer. Channel
counts follow :func:`channels_at`, so the default networks are small enough for CPU at 128 px and grow
through ``channel_base`` / ``channel_max``.
"""

from __future__ import annotations

import torch
from torch import nn

from src.models.selfie.stylegan2 import ConvLayer, MappingNetwork, ResBlock, StyledConv, ToRGB

DEFAULT_CHANNEL_BASE = 4096


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
    """Channel count of the feature maps at resolution ``res``: min(channel_max, channel_base // res).

    Args:
        res: spatial resolution (side in pixels).
        channel_base: channel count times resolution (halving channels as resolution doubles).
        channel_max: upper bound.

    Returns:
        The channel count (>= 1).

    Raises:
        ValueError: when channel_base // res is 0.
    """
    ch = min(channel_max, channel_base // res)
    if ch < 1:
        raise ValueError(f"channel_base={channel_base} gives no channels at resolution {res}")
    return ch


def _check_pow2(name: str, value: int) -> None:
    if value < 1 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two, got {value}")


def _log2(value: int) -> int:
    return value.bit_length() - 1


def _channel_table(min_size: int, size: int, channel_base: int, channel_max: int) -> dict[int, int]:
    """{res: channels_at(res)} for the powers of two from min_size to size."""
    levels = range(_log2(min_size), _log2(size) + 1)
    return {2**i: channels_at(2**i, channel_base, channel_max) for i in levels}


def _register_noise(module: nn.Module, resolutions: list[int]) -> None:
    """Give ``module`` fixed noise buffers ``noise_i`` (1,1,r_i,r_i) and ``n_noise`` = their count."""
    module.n_noise = len(resolutions)
    for i, r in enumerate(resolutions):
        module.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))


def _select_noise(module: nn.Module, noise: list | None, randomize_noise: bool) -> list[torch.Tensor | None]:
    """The per-layer noise: the given list, fresh draws (None entries), or the module's fixed buffers."""
    n_noise = module.n_noise
    if noise is not None:
        if len(noise) != n_noise:
            raise ValueError(f"expected {n_noise} noise tensors, got {len(noise)}")
        return list(noise)
    if randomize_noise:
        return [None] * n_noise
    return [getattr(module, f"noise_{i}") for i in range(n_noise)]


class FeatureGenerator(nn.Module):
    """StyleGAN2 generator of a (B,out_channels,size,size) feature map from a latent z.

    A learned constant (min_size x min_size) goes through one StyledConv, then per resolution doubling
    a StyledConv with upsampling and a plain StyledConv; ToRGB-style skip outputs (with ``out_channels``
    channels, no activation) are upsampled and summed up to full size.

    Args:
        size: output side (power of two, >= min_size).
        out_channels: output channels.
        style_dim: size of z and w.
        n_mapping: mapping-network layers.
        channel_base: see :func:`channels_at`.
        channel_max: see :func:`channels_at`.
        min_size: side of the learned constant (power of two).
        lr_mul: learning-rate multiplier of the mapping network.

    Attributes:
        n_noise: number of noise inputs; ``noise_i`` buffers (1,1,res_i,res_i) hold the fixed noise.
    """

    def __init__(
        self,
        size: int,
        out_channels: int,
        style_dim: int = 256,
        n_mapping: int = 4,
        channel_base: int = DEFAULT_CHANNEL_BASE,
        channel_max: int = 256,
        min_size: int = 4,
        lr_mul: float = 0.01,
    ) -> None:
        super().__init__()
        _check_pow2("FeatureGenerator size", size)
        _check_pow2("FeatureGenerator min_size", min_size)
        if size < min_size:
            raise ValueError(f"FeatureGenerator: size={size} must be >= min_size={min_size}")
        self.size, self.out_channels, self.style_dim = size, out_channels, style_dim
        ch = _channel_table(min_size, size, channel_base, channel_max)
        self.mapping = MappingNetwork(style_dim, n_mapping, lr_mul=lr_mul)
        self.const = nn.Parameter(torch.randn(1, ch[min_size], min_size, min_size))
        self.conv1 = StyledConv(ch[min_size], ch[min_size], 3, style_dim)
        self.to_out1 = ToRGB(ch[min_size], style_dim, out_channels, upsample=False)
        self.convs = nn.ModuleList()
        self.to_outs = nn.ModuleList()
        noise_res = [min_size]
        res = min_size * 2
        while res <= size:
            self.convs.append(StyledConv(ch[res // 2], ch[res], 3, style_dim, upsample=True))
            self.convs.append(StyledConv(ch[res], ch[res], 3, style_dim))
            self.to_outs.append(ToRGB(ch[res], style_dim, out_channels, upsample=True))
            noise_res += [res, res]
            res *= 2
        _register_noise(self, noise_res)

    def forward(
        self, z: torch.Tensor, noise: list | None = None, randomize_noise: bool = True
    ) -> torch.Tensor:
        """Generates the feature map.

        Args:
            z: (B,style_dim) latent codes.
            noise: optional list of ``n_noise`` tensors (B|1,1,res_i,res_i) (None entries are drawn).
            randomize_noise: without ``noise``, draw fresh noise (True) or use the fixed buffers (False).

        Returns:
            (B,out_channels,size,size) feature map.
        """
        w = self.mapping(z)
        noise = _select_noise(self, noise, randomize_noise)
        x = self.conv1(self.const.expand(z.shape[0], -1, -1, -1), w, noise[0])
        skip = self.to_out1(x, w)
        for i, to_out in enumerate(self.to_outs):
            x = self.convs[2 * i](x, w, noise[1 + 2 * i])
            x = self.convs[2 * i + 1](x, w, noise[2 + 2 * i])
            skip = to_out(x, w, skip)
        return skip


class StyleUNet(nn.Module):
    """StyleAvatar's G_style: a U-Net whose decoder is a style-modulated StyleGAN2 synthesis network.

    Encoder: a 1x1 ConvLayer lifts the conditioning image to features at full size, then ResBlocks halve
    the resolution down to ``min_size``; the feature of every scale is kept as a skip. Decoder: a
    StyledConv on the bottom feature, then per resolution doubling a StyledConv with upsampling, the
    encoder skip of that scale **concatenated** along channels (so the decoder sees the encoder's
    features unmixed and learns how to merge them), and a StyledConv fusing the concatenation. ToRGB-style
    skip outputs of every level are upsampled and summed into the (B,out_channels,size,size) output.

    Args:
        in_channels: channels of the conditioning image.
        out_channels: output channels.
        size: side of the conditioning image and of the output (power of two, >= 2 * min_size).
        style_dim: size of z and w.
        n_mapping: mapping-network layers.
        channel_base: see :func:`channels_at`.
        channel_max: see :func:`channels_at`.
        min_size: side of the bottleneck (power of two).
        lr_mul: learning-rate multiplier of the mapping network.

    Attributes:
        n_noise: number of noise inputs; ``noise_i`` buffers (1,1,res_i,res_i) hold the fixed noise.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: int,
        style_dim: int = 256,
        n_mapping: int = 4,
        channel_base: int = DEFAULT_CHANNEL_BASE,
        channel_max: int = 256,
        min_size: int = 8,
        lr_mul: float = 0.01,
    ) -> None:
        super().__init__()
        _check_pow2("StyleUNet size", size)
        _check_pow2("StyleUNet min_size", min_size)
        if size < 2 * min_size:
            raise ValueError(f"StyleUNet: size={size} must be >= 2 * min_size = {2 * min_size}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.size, self.style_dim, self.min_size = size, style_dim, min_size
        ch = _channel_table(min_size, size, channel_base, channel_max)
        self.mapping = MappingNetwork(style_dim, n_mapping, lr_mul=lr_mul)
        self.from_in = ConvLayer(in_channels, ch[size], 1)
        self.encoder = nn.ModuleList()
        res = size
        while res > min_size:
            self.encoder.append(ResBlock(ch[res], ch[res // 2], downsample=True))
            res //= 2
        self.bottom = StyledConv(ch[min_size], ch[min_size], 3, style_dim)
        self.to_out_bottom = ToRGB(ch[min_size], style_dim, out_channels, upsample=False)
        self.up_convs = nn.ModuleList()
        self.fuse_convs = nn.ModuleList()
        self.to_outs = nn.ModuleList()
        noise_res = [min_size]
        res = min_size * 2
        while res <= size:
            self.up_convs.append(StyledConv(ch[res // 2], ch[res], 3, style_dim, upsample=True))
            self.fuse_convs.append(StyledConv(2 * ch[res], ch[res], 3, style_dim))
            self.to_outs.append(ToRGB(ch[res], style_dim, out_channels, upsample=True))
            noise_res += [res, res]
            res *= 2
        _register_noise(self, noise_res)

    def encode(self, cond: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features, finest first.

        Args:
            cond: (B,in_channels,size,size) conditioning image.

        Returns:
            List of (B,ch(res),res,res) for res = size, size/2, ..., min_size.
        """
        if cond.dim() != 4 or cond.shape[1] != self.in_channels or tuple(cond.shape[-2:]) != (self.size,) * 2:
            raise ValueError(
                f"StyleUNet expects cond of shape (B,{self.in_channels},{self.size},{self.size}), "
                f"got {tuple(cond.shape)}"
            )
        feats = [self.from_in(cond)]
        for block in self.encoder:
            feats.append(block(feats[-1]))
        return feats

    def forward(
        self,
        cond: torch.Tensor,
        z: torch.Tensor,
        noise: list | None = None,
        randomize_noise: bool = True,
    ) -> torch.Tensor:
        """Translates the conditioning image into the output image / feature map.

        Args:
            cond: (B,in_channels,size,size) conditioning image.
            z: (B,style_dim) latent codes.
            noise: optional list of ``n_noise`` tensors (B|1,1,res_i,res_i) (None entries are drawn).
            randomize_noise: without ``noise``, draw fresh noise (True) or use the fixed buffers (False).

        Returns:
            (B,out_channels,size,size).
        """
        feats = self.encode(cond)
        w = self.mapping(z)
        noise = _select_noise(self, noise, randomize_noise)
        x = self.bottom(feats[-1], w, noise[0])
        skip = self.to_out_bottom(x, w)
        for i, (up, fuse, to_out) in enumerate(zip(self.up_convs, self.fuse_convs, self.to_outs)):
            x = up(x, w, noise[1 + 2 * i])
            x = fuse(torch.cat([x, feats[-2 - i]], dim=1), w, noise[2 + 2 * i])
            skip = to_out(x, w, skip)
        return skip
