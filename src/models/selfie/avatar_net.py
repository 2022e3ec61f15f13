"""The image avatar's generator: G_fa (UV neural texture), G_b (background features) and G_style."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from src.core.outputs import Out
from src.models.selfie.conditioning import HeadConditioner
from src.models.selfie.generators import FeatureGenerator, StyleUNet
from src.render.renderer import sample_texture


class SelfieGenerator(nn.Module):
    """Conditioning images -> avatar image I_A and foreground mask I_FM.

    G_fa draws a face feature map F_fa in the head model's UV atlas (a neural texture), which the UV image
    I_UV samples into screen space; G_b draws a background feature map F_b at the output size. G_style (a
    StyleGAN-based U-Net) takes the sampled F_fa, F_b, the head-model render I_R, I_UV and the coverage
    mask, and decodes RGB plus a mask logit. The three latents are fixed random codes of this subject
    (buffers, so a checkpoint restores them); the mapping networks learn what to make of them.

    Args:
        size: output side in pixels (power of two).
        style_dim: latent and style width of all three generators.
        face: {"size", "channels", **FeatureGenerator kwargs} of G_fa (size = UV texture side).
        background: {"size", "channels", **FeatureGenerator kwargs} of G_b (upsampled to ``size``).
        style: StyleUNet kwargs of G_style (channel_base, channel_max, min_size, n_mapping).
        seed: seed of the fixed latents.
    """

    def __init__(
        self,
        size: int,
        style_dim: int,
        face: dict[str, Any],
        background: dict[str, Any],
        style: dict[str, Any],
        seed: int = 0,
    ) -> None:
        super().__init__()
        face, background = dict(face), dict(background)
        self.size = int(size)
        self.face_channels = int(face.pop("channels"))
        self.background_channels = int(background.pop("channels"))
        self.g_fa = FeatureGenerator(face.pop("size"), self.face_channels, style_dim=style_dim, **face)
        self.g_b = FeatureGenerator(
            background.pop("size"), self.background_channels, style_dim=style_dim, **background
        )
        in_ch = self.face_channels + self.background_channels + HeadConditioner.channels
        self.g_style = StyleUNet(in_ch, 4, self.size, style_dim=style_dim, **dict(style))
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("z", torch.randn(3, style_dim, generator=g))  # fa, b, style

    def forward(self, cond: dict[str, torch.Tensor], randomize_noise: bool = True) -> dict[str, torch.Tensor]:
        """Generate a batch.

        Args:
            cond: :class:`HeadConditioner` output at the generator size (CONDITION_STACK (B,6,S,S),
                CONDITION_UV (B,2,S,S), CONDITION_MASK (B,1,S,S)).
            randomize_noise: draw fresh noise (training) or use each layer's fixed noise (inference).

        Returns:
            dict with Out.IMAGE (B,3,S,S) (about [0,1]; not clamped), Out.MATTE (B,1,S,S) in (0,1) (the
            predicted foreground mask I_FM) and "face_features" (B,C_fa,S,S) the sampled neural texture.
        """
        b, _, h, w = cond[Out.CONDITION_STACK].shape
        if (h, w) != (self.size, self.size):
            raise ValueError(
                f"conditioning is {h}x{w} but the generator makes {self.size}x{self.size} images"
            )
        z = self.z
        f_fa = self.g_fa(z[0:1], randomize_noise=randomize_noise)  # (1,C_fa,T,T)
        sampled = sample_texture(f_fa, cond[Out.CONDITION_UV].permute(0, 2, 3, 1)) * cond[Out.CONDITION_MASK]
        f_b = self.g_b(z[1:2], randomize_noise=randomize_noise)
        if f_b.shape[-1] != self.size:
            f_b = F.interpolate(f_b, size=(h, w), mode="bilinear", align_corners=False)
        x = torch.cat([sampled, f_b.expand(b, -1, -1, -1), cond[Out.CONDITION_STACK]], dim=1)
        out = self.g_style(x, z[2:3].expand(b, -1), randomize_noise=randomize_noise)
        return {
            Out.IMAGE: 0.5 * (out[:, :3] + 1.0),
            Out.MATTE: torch.sigmoid(out[:, 3:4]),
            "face_features": sampled,
        }


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model for parameters; buffers are copied.

    Args:
        ema: the averaged copy (same architecture as ``model``).
        model: the trained network.
        beta: decay in [0,1] (1 keeps the average unchanged).
    """
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1.0 - beta)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def ema_beta(batch_size: int, step: int, half_life_images: float, rampup: float | None = 0.05) -> float:
    """StyleGAN2-ADA style EMA decay: half-life in images, ramped up at the start of training.

    Args:
        batch_size: images per step; step: optimiser steps done so far.
        half_life_images: images after which an old weight counts half.
        rampup: the half-life is at most ``rampup * images seen`` (None = no ramp-up).

    Returns:
        beta in [0,1).
    """
    half_life = float(half_life_images)
    if rampup is not None:
        half_life = min(half_life, step * batch_size * rampup)
    return 0.5 ** (batch_size / max(half_life, 1e-8))
