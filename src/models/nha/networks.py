"""Sub-networks of the mesh avatar: geometry MLP, mapping network, FiLM-SIREN texture, UV embedding.

SIREN initialisation follows Sitzmann et al. (first layer U(-1/n, 1/n), later layers
U(-sqrt(6/n)/w0, sqrt(6/n)/w0)); FiLM conditioning follows pi-GAN (sin(freq * (W x + b) + phase)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def positional_encoding(x: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """NeRF-style encoding. x (...,D) -> (...,D*(1+2*n_freqs))."""
    if n_freqs == 0:
        return x
    freqs = 2.0 ** torch.arange(n_freqs, device=x.device, dtype=x.dtype) * math.pi
    xf = x[..., None] * freqs  # (...,D,n)
    return torch.cat([x, torch.sin(xf).flatten(-2), torch.cos(xf).flatten(-2)], dim=-1)


class GeometryMLP(nn.Module):
    """Per-vertex offsets from the normalised template position and a per-frame condition.

    Args:
        cond_dim: size of the condition vector (e.g. expression + rotation).
        hidden: hidden width; layers: hidden layers; n_freqs: positional-encoding frequencies.
        max_offset: offsets are ``max_offset * tanh(raw)`` (metres), or ``bound * tanh(raw)`` with a
            per-vertex bound given to :meth:`forward`.
    """

    def __init__(
        self, cond_dim: int, hidden: int = 128, layers: int = 4, n_freqs: int = 4, max_offset: float = 0.01
    ):
        super().__init__()
        self.n_freqs = n_freqs
        self.max_offset = max_offset
        in_dim = 3 * (1 + 2 * n_freqs)
        self.pos = nn.Linear(in_dim, hidden)
        self.cond = nn.Linear(cond_dim, hidden)
        self.body = nn.Sequential(
            *[m for _ in range(layers - 1) for m in (nn.Linear(hidden, hidden), nn.Softplus(beta=10))]
        )
        self.out = nn.Linear(hidden, 3)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, bound: torch.Tensor | None = None) -> torch.Tensor:
        """x (V,3) normalised positions, cond (B,C), bound (V,) or None (max_offset) -> offsets (B,V,3)."""
        h = self.pos(positional_encoding(x, self.n_freqs))[None] + self.cond(cond)[:, None]
        h = self.body(F.softplus(h, beta=10))
        scale = self.max_offset if bound is None else bound[None, :, None]
        return scale * torch.tanh(self.out(h))


class MappingNetwork(nn.Module):
    """Condition (B,C) -> per-layer FiLM frequencies and phases, each (B,layers,hidden)."""

    def __init__(self, cond_dim: int, hidden: int, layers: int, width: int = 128, depth: int = 3):
        super().__init__()
        mods: list[nn.Module] = []
        d = cond_dim
        for _ in range(depth):
            mods += [nn.Linear(d, width), nn.LeakyReLU(0.2)]
            d = width
        self.net = nn.Sequential(*mods)
        self.head = nn.Linear(width, 2 * layers * hidden)
        self.layers, self.hidden = layers, hidden
        with torch.no_grad():
            self.head.weight.mul_(0.25)
            self.head.bias.zero_()

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.net(cond)).view(-1, 2, self.layers, self.hidden)
        freq = 15.0 * out[:, 0] + 30.0  # around SIREN's w0 = 30
        return freq, out[:, 1]


class FiLMSiren(nn.Module):
    """SIREN whose layers are modulated: h = sin(freq * (W h + b) + phase).

    Args:
        in_dim: per-sample input size; hidden: width; layers: modulated layers; out_dim: output size.
    """

    def __init__(self, in_dim: int, hidden: int = 128, layers: int = 4, out_dim: int = 3):
        super().__init__()
        self.linears = nn.ModuleList([nn.Linear(in_dim if i == 0 else hidden, hidden) for i in range(layers)])
        self.out = nn.Linear(hidden, out_dim)
        with torch.no_grad():
            for i, lin in enumerate(self.linears):
                n = lin.in_features
                bound = 1.0 / n if i == 0 else math.sqrt(6.0 / n) / 30.0
                lin.weight.uniform_(-bound, bound)
            bound = math.sqrt(6.0 / hidden) / 30.0
            self.out.weight.uniform_(-bound, bound)

    def forward(
        self, x: torch.Tensor, freq: torch.Tensor, phase: torch.Tensor, batch: torch.Tensor
    ) -> torch.Tensor:
        """x (P,in_dim) samples of B images; freq/phase (B,layers,hidden); batch (P,) image of each sample.

        Returns:
            (P,out_dim) raw outputs (apply tanh for colours).
        """
        h = x
        for i, lin in enumerate(self.linears):
            h = torch.sin(freq[batch, i] * lin(h) + phase[batch, i])
        return self.out(h)


class UVEmbedding(nn.Module):
    """A learned feature grid in UV space sampled bilinearly. uv (P,2) in [0,1] (v up) -> (P,C)."""

    def __init__(self, channels: int = 16, size: int = 128):
        super().__init__()
        self.grid = nn.Parameter(1e-2 * torch.randn(1, channels, size, size))

    def forward(self, uv: torch.Tensor) -> torch.Tensor:
        g = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2], -1)[None, :, None]  # (1,P,1,2)
        return F.grid_sample(self.grid, g, mode="bilinear", align_corners=False)[0, :, :, 0].T
