"""Our own LPIPS (Zhang et al. 2018, AlexNet trunk, v0.1), usable as a metric and as a perceptual loss.

``LPIPS(x, y) = sum_l mean_hw( w_l . (n(f_l(x)) - n(f_l(y)))^2 )`` where ``f_l`` are the five ReLU outputs
of ImageNet AlexNet applied to scaled inputs, ``n`` normalises each pixel's channel vector to unit length
and ``w_l >= 0`` are the learned 1x1 linear layers. Weights come from :mod:`src.pretrained.weights` (real
weights or a loud error, never random ones).

The network is frozen and kept out of the ``parameters()``/``state_dict()`` of whatever owns it: the
modules here hold it in a plain attribute and move it along in ``_apply`` (``.to()``, ``.cuda()``,
``.double()``...). Inputs stay differentiable, so :class:`LPIPS` doubles as a perceptual loss.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchmetrics import Metric

from src.pretrained.weights import ALEX_CHANNELS, ALEX_CONV_IDX, describe, resolve_lpips_alexnet

# Scaling layer constants from the LPIPS reference code (inputs in [-1,1] -> ImageNet-like statistics).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


class LPIPSNet(nn.Module):
    """AlexNet trunk (torchvision ``features[:12]`` layout) + scaling layer + LPIPS linear layers.

    State dict layout: ``features.{0,3,6,8,10}.{weight,bias}`` and ``lins.{0..4}.weight`` (1,C,1,1).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
        )
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in ALEX_CHANNELS)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self._taps = tuple(i + 1 for i in ALEX_CONV_IDX)  # the ReLU after each conv

    def trunk(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU feature maps of (N,3,H,W) inputs in [-1,1], after the scaling layer."""
        h = (x - self.shift) / self.scale
        feats = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self._taps:
                feats.append(h)
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance of (N,3,H,W) inputs in [-1,1]; returns (N,)."""
        fx, fy = self.trunk(x), self.trunk(y)
        total = x.new_zeros(x.shape[0])
        for lin, a, b in zip(self.lins, fx, fy):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((a - b).pow(2)).mean(dim=(1, 2, 3))
        return total


def build_lpips_net(weights: str | Path | dict[str, torch.Tensor] | None = None) -> tuple[LPIPSNet, str]:
    """A frozen eval-mode :class:`LPIPSNet` with real weights.

    Args:
        weights: a state dict in our layout, an explicit weights path, or None (resolve automatically).

    Returns:
        (net, source string).

    Raises:
        src.pretrained.weights.WeightsUnavailableError: when no real weights can be found.
    """
    if isinstance(weights, dict):
        sd, source = weights, "state dict passed in"
    else:
        sd = resolve_lpips_alexnet(weights)
        source = describe()["lpips"]
    net = LPIPSNet()
    net.load_state_dict(sd, strict=True)
    net.eval().requires_grad_(False)
    return net, source


class _HiddenNet:
    """Mixin: keep a frozen network in a plain attribute, out of parameters() and state_dict()."""

    _net: LPIPSNet

    def _apply(self, fn, *args, **kwargs):  # nn.Module._apply signature
        self._net._apply(fn)
        return super()._apply(fn, *args, **kwargs)

    @property
    def net(self) -> LPIPSNet:
        """The frozen network (not a registered submodule)."""
        return self._net


class LPIPS(_HiddenNet, nn.Module):
    """LPIPS distance / perceptual loss for images in [0,1].

    The network is frozen (``requires_grad=False``, always eval mode) and contributes nothing to
    ``parameters()`` or ``state_dict()``; gradients flow to the inputs.

    Args:
        weights: explicit weights path, a state dict in our layout, or None to resolve automatically.
        net: an already built network to share (then ``weights`` is ignored).
        source: provenance string when ``net`` is given.
    """

    def __init__(
        self,
        weights: str | Path | dict[str, torch.Tensor] | None = None,
        net: LPIPSNet | None = None,
        source: str = "shared network",
    ) -> None:
        super().__init__()
        if net is None:
            net, source = build_lpips_net(weights)
        object.__setattr__(self, "_net", net)
        self.source = source
        self.train(False)

    def train(self, mode: bool = True) -> LPIPS:  # always frozen: ignores mode
        return super().train(False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-image LPIPS.

        Args:
            pred: (N,3,H,W) images in [0,1].
            target: (N,3,H,W) images in [0,1].

        Returns:
            (N,) distances (0 for identical images), differentiable w.r.t. both inputs.
        """
        if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
            raise ValueError(
                f"LPIPS expects two (N,3,H,W) images, got {tuple(pred.shape)}, {tuple(target.shape)}"
            )
        dtype = self._net.lins[0].weight.dtype
        return self._net(pred.to(dtype) * 2 - 1, target.to(dtype) * 2 - 1)


class LPIPSMetric(_HiddenNet, Metric):
    """Mean LPIPS over all images seen (torchmetrics; states are a sum and a count, dist-reduced by sum).

    The network is not part of the metric's ``state_dict()``.

    Args:
        weights: explicit weights path, state dict, or None (resolve automatically).
        lpips: an :class:`LPIPS` module whose network to share.
        **kwargs: passed to :class:`torchmetrics.Metric`.
    """

    is_differentiable = True
    higher_is_better = False
    full_state_update = False

    def __init__(
        self, weights: str | Path | dict | None = None, lpips: LPIPS | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        if lpips is None:
            lpips = LPIPS(weights)
        object.__setattr__(self, "_net", lpips.net)
        self.source = lpips.source
        self.add_state("sum_lpips", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def train(self, mode: bool = True) -> LPIPSMetric:  # frozen network: ignores mode
        return super().train(False)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Accumulate (N,3,H,W) image pairs in [0,1]."""
        with torch.no_grad():
            d = self._net(pred.to(self._net.shift.dtype) * 2 - 1, target.to(self._net.shift.dtype) * 2 - 1)
        self.sum_lpips += d.double().sum()
        self.total += d.numel()

    def compute(self) -> torch.Tensor:
        """Mean LPIPS (scalar float64 tensor)."""
        if int(self.total) == 0:
            raise ValueError("LPIPSMetric.compute() called before any update()")
        return self.sum_lpips / self.total
