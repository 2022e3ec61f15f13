"""StyleGAN2 building blocks in plain PyTorch (no compiled CUDA ops), for CPU and GPU alike.

Design follows StyleGAN2 (Karras et al. 2020): equalised learning rate, weight modulation and
demodulation, noise injection, skip ("toRGB") outputs, residual discriminator blocks and minibatch
standard deviation. Two simplifications keep everything in ``F.conv2d`` / ``F.interpolate``:

* Upsampling is bilinear x2 (``align_corners=False``) *before* a same-size convolution, in place of
  the transposed convolution + FIR blur (upfirdn2d) of the original.
* Downsampling is a 2x2 average pool (which equals bilinear /2 with ``align_corners=False``): after
  the convolution in :class:`ModulatedConv2d`, before it in :class:`ConvLayer` (so the discriminator's
  strided layers cost what a stride-2 convolution costs).

The fused leaky ReLU is ``leaky_relu(x + b, 0.2) * sqrt(2)`` (the gain keeps activations unit-variance).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def fused_lrelu(x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Bias + leaky ReLU (slope 0.2) scaled by sqrt(2).

    Args:
        x: (B,C,...) input.
        bias: optional (C,) bias, broadcast over the dimensions after the channel one.

    Returns:
        (B,C,...) activations.
    """
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.dim() - 2)))
    return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling. x (B,C,H,W) -> (B,C,2H,2W)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling (= bilinear /2). x (B,C,H,W) -> (B,C,H/2,W/2); H, W even."""
    return F.avg_pool2d(x, 2)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate.

    The stored weight is N(0,1)/lr_mul and is scaled at runtime by lr_mul/sqrt(in_dim); the stored bias
    is bias_init/lr_mul and is scaled by lr_mul, so the effective initial bias is ``bias_init``.

    Args:
        in_dim: input features.
        out_dim: output features.
        bias: whether to learn a bias.
        bias_init: effective initial bias value.
        lr_mul: learning-rate multiplier (0.01 in the StyleGAN2 mapping network).
        activation: None (linear) or "lrelu" (fused leaky ReLU).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        if activation not in (None, "lrelu"):
            raise ValueError(f"activation must be None or 'lrelu', got {activation!r}")
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), bias_init / lr_mul)) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,in_dim) -> (B,out_dim)."""
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation == "lrelu":
            return fused_lrelu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        out_dim, in_dim = self.weight.shape
        return f"{in_dim}, {out_dim}, lr_mul={self.lr_mul}, activation={self.activation}"


class EqualConv2d(nn.Module):
    """2-D convolution with equalised learning rate (N(0,1) weight scaled by 1/sqrt(in_ch*k*k)).

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel: square kernel size.
        stride: convolution stride.
        padding: zero padding.
        bias: whether to learn a (zero-initialised) bias.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,in_ch,H,W) -> (B,out_ch,H',W') with the usual convolution arithmetic."""
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel={k}, stride={self.stride}, padding={self.padding}"


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (no bias; "same" padding).

    Per sample b, the style gives input-channel scales s_b (an EqualLinear initialised to 1); the weight
    becomes w_b = scale * w * s_b[in] and, with demodulation, w_b / sqrt(sum_{in,kh,kw} w_b^2 + 1e-8) per
    output channel. All samples run at once as one grouped convolution (groups = B).

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel: square kernel size (odd).
        style_dim: size of the style vector.
        demodulate: normalise each output channel's modulated weight.
        upsample: bilinear x2 before the convolution.
        downsample: 2x2 average pool after the convolution.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        downsample: bool = False,
    ) -> None:
        super().__init__()
        if upsample and downsample:
            raise ValueError("ModulatedConv2d: upsample and downsample are exclusive")
        self.in_ch, self.out_ch, self.kernel = in_ch, out_ch, kernel
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.demodulate, self.upsample, self.downsample = demodulate, upsample, downsample

    def modulated_weight(self, style: torch.Tensor) -> torch.Tensor:
        """Per-sample weights. style (B,style_dim) -> (B,out_ch,in_ch,k,k)."""
        s = self.modulation(style)  # (B,in_ch)
        w = self.scale * self.weight[None] * s[:, None, :, None, None]
        if self.demodulate:
            w = w * torch.rsqrt(w.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        return w

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """x (B,Cin,H,W), style (B,style_dim) -> (B,Cout,H',W').

        H' = 2H with upsample, H/2 with downsample, H otherwise (likewise W').
        """
        B = x.shape[0]
        w = self.modulated_weight(style).reshape(B * self.out_ch, self.in_ch, self.kernel, self.kernel)
        if self.upsample:
            x = upsample2x(x)
        H, W = x.shape[-2:]
        out = F.conv2d(x.reshape(1, B * self.in_ch, H, W), w, padding=self.kernel // 2, groups=B)
        out = out.view(B, self.out_ch, H, W)
        if self.downsample:
            out = downsample2x(out)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_ch}, {self.out_ch}, kernel={self.kernel}, demodulate={self.demodulate}, "
            f"upsample={self.upsample}, downsample={self.downsample}"
        )


class NoiseInjection(nn.Module):
    """Adds ``weight * noise`` with one learned scalar weight (zero-initialised), as in StyleGAN2."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """x (B,C,H,W), noise (B,1,H,W) or (1,1,H,W) or None (drawn N(0,1)) -> (B,C,H,W)."""
        if noise is None:
            B, _, H, W = x.shape
            noise = x.new_empty(B, 1, H, W).normal_()
        return x + self.weight * noise


class StyledConv(nn.Module):
    """Modulated 3x3 (or k x k) convolution + noise + bias + fused leaky ReLU.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel: square kernel size (odd).
        style_dim: size of the style vector.
        upsample: bilinear x2 before the convolution.
        demodulate: demodulate the weights.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        style_dim: int,
        upsample: bool = False,
        demodulate: bool = True,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel, style_dim, demodulate, upsample=upsample)
        self.noise = NoiseInjection()
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B,Cin,H,W), style (B,style_dim), noise (B|1,1,H',W') or None -> (B,Cout,H',W')."""
        return fused_lrelu(self.noise(self.conv(x, style), noise), self.bias)


class ToRGB(nn.Module):
    """Skip output: 1x1 modulated convolution without demodulation + bias, plus the upsampled skip.

    Args:
        in_ch: input channels.
        style_dim: size of the style vector.
        out_ch: output channels (3 for RGB; any count for feature maps).
        upsample: upsample the incoming skip (bilinear x2) before adding it.
    """

    def __init__(self, in_ch: int, style_dim: int, out_ch: int = 3, upsample: bool = True) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))
        self.upsample = upsample

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """Skip output plus the incoming skip.

        Args:
            x: (B,in_ch,H,W) features.
            style: (B,style_dim) style.
            skip: None, or (B,out_ch,H/2,W/2) with upsample, (B,out_ch,H,W) without.

        Returns:
            (B,out_ch,H,W).
        """
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + (upsample2x(skip) if self.upsample else skip)
        return out


class PixelNorm(nn.Module):
    """Normalises each feature vector to unit RMS over dim 1. x (B,C,...) -> (B,C,...)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class MappingNetwork(nn.Module):
    """StyleGAN mapping network: PixelNorm then ``n_layers`` EqualLinear + fused leaky ReLU.

    Args:
        latent_dim: size of z and of w.
        n_layers: number of fully connected layers.
        lr_mul: learning-rate multiplier of the layers.
    """

    def __init__(self, latent_dim: int, n_layers: int = 8, lr_mul: float = 0.01) -> None:
        super().__init__()
        layers: list[nn.Module] = [PixelNorm()]
        for _ in range(n_layers):
            layers.append(EqualLinear(latent_dim, latent_dim, lr_mul=lr_mul, activation="lrelu"))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B,latent_dim) -> w (B,latent_dim)."""
        return self.net(z)


class ConvLayer(nn.Module):
    """Equalised convolution ("same" padding) + optional fused leaky ReLU, optionally downsampling.

    Downsampling is a 2x2 average pool *before* the convolution (a cheap stand-in for StyleGAN2's blur +
    stride-2 convolution).

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel: square kernel size (odd).
        downsample: halve the resolution.
        bias: learn a bias (added before the activation).
        activate: apply the fused leaky ReLU.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        downsample: bool = False,
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        super().__init__()
        self.conv = EqualConv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias and not activate)
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias and activate else None
        self.downsample, self.activate = downsample, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,in_ch,H,W) -> (B,out_ch,H',W'), H' = H/2 with downsample else H (likewise W')."""
        if self.downsample:
            x = downsample2x(x)
        out = self.conv(x)
        return fused_lrelu(out, self.bias) if self.activate else out


class ResBlock(nn.Module):
    """StyleGAN2 residual block: two 3x3 ConvLayers + a 1x1 linear skip, summed and divided by sqrt(2).

    Args:
        in_ch: input channels.
        out_ch: output channels.
        downsample: halve the resolution (in the second convolution and in the skip).
    """

    def __init__(self, in_ch: int, out_ch: int, downsample: bool = True) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=downsample)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=downsample, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,in_ch,H,W) -> (B,out_ch,H',W'), H' = H/2 with downsample else H (likewise W')."""
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (StyleGAN2): appends ``n_channels`` feature maps of group statistics.

    The batch is split into G = min(group_size, B) interleaved groups (sample i belongs to group
    i mod (B/G)); if G does not divide B, the largest divisor of B below it is used. For each group the
    standard deviation over its members of every feature (channels split into ``n_channels`` parts) is
    averaged over channels and pixels, and broadcast as an extra channel to the group's members.

    Args:
        group_size: largest group size.
        n_channels: number of statistics channels appended (must divide C).
    """

    def __init__(self, group_size: int = 4, n_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.n_channels = group_size, n_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,C,H,W) -> (B,C+n_channels,H,W)."""
        B, C, H, W = x.shape
        F_ = self.n_channels
        if C % F_:
            raise ValueError(f"MinibatchStd: n_channels={F_} must divide the channel count {C}")
        G = min(self.group_size, B)
        while B % G:
            G -= 1
        y = x.reshape(G, B // G, F_, C // F_, H, W)
        y = y - y.mean(dim=0)
        std = (y.pow(2).mean(dim=0) + 1e-8).sqrt()  # (B/G,F,C/F,H,W)
        std = std.mean(dim=(2, 3, 4))  # (B/G,F)
        std = std.reshape(-1, F_, 1, 1).repeat(G, 1, H, W)  # (B,F,H,W)
        return torch.cat([x, std], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, n_channels={self.n_channels}"
