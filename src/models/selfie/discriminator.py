"""StyleGAN2 residual discriminator of the image avatar (sees the image plus, optionally, conditioning)."""

from __future__ import annotations

import torch
from torch import nn

from src.models.selfie.generators import DEFAULT_CHANNEL_BASE, channels_at
from src.models.selfie.stylegan2 import ConvLayer, EqualLinear, MinibatchStd, ResBlock


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: fromRGB, ResBlocks down to 4x4, minibatch std, conv, two linears.

    Args:
        size: input side (power of two, >= 4).
        in_channels: input channels (3 for RGB; more when conditioning channels are concatenated).
        channel_base: see :func:`src.models.selfie.generators.channels_at`.
        channel_max: see :func:`src.models.selfie.generators.channels_at`.
        mbstd_group: minibatch-std group size.
        mbstd_channels: minibatch-std statistics channels (must divide the 4x4 channel count).
    """

    def __init__(
        self,
        size: int,
        in_channels: int = 3,
        channel_base: int = DEFAULT_CHANNEL_BASE,
        channel_max: int = 256,
        mbstd_group: int = 4,
        mbstd_channels: int = 1,
    ) -> None:
        super().__init__()
        if size < 4 or size & (size - 1):
            raise ValueError(f"Discriminator size must be a power of two >= 4, got {size}")
        self.size, self.in_channels = size, in_channels
        ch = {2**i: channels_at(2**i, channel_base, channel_max) for i in range(2, size.bit_length())}
        self.from_rgb = ConvLayer(in_channels, ch[size], 1)
        blocks = []
        res = size
        while res > 4:
            blocks.append(ResBlock(ch[res], ch[res // 2]))
            res //= 2
        self.blocks = nn.Sequential(*blocks)
        c4 = ch[4]
        self.mbstd = MinibatchStd(mbstd_group, mbstd_channels)
        self.final_conv = ConvLayer(c4 + mbstd_channels, c4, 3)
        self.final_linear = nn.Sequential(EqualLinear(c4 * 4 * 4, c4, activation="lrelu"), EqualLinear(c4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,in_channels,size,size) -> (B,1) realness logits."""
        if x.dim() != 4 or x.shape[1] != self.in_channels or tuple(x.shape[-2:]) != (self.size,) * 2:
            raise ValueError(
                f"Discriminator expects (B,{self.in_channels},{self.size},{self.size}), got {tuple(x.shape)}"
            )
        h = self.final_conv(self.mbstd(self.blocks(self.from_rgb(x))))
        return self.final_linear(h.flatten(1))
