"""VGG16 perceptual loss with real ImageNet weights (never random ones).

The frozen network is kept in a plain attribute, out of the ``parameters()`` and ``state_dict()`` of the
owning model (so checkpoints do not carry 60 MB of fixed weights and optimisers never see them), and moved
along by ``_apply`` (``.to()``, ``.cuda()``, ``.double()``...). It always stays in eval mode.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from src.losses.frozen import FrozenNetLoss
from src.pretrained.vgg16 import VGG16_CONVS, resolve_vgg16
from src.pretrained.weights import describe

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def vgg16_layer_index() -> dict[str, int]:
    """Layer name -> index in torchvision's ``vgg16().features`` (``conv3_2``, ``relu3_2``, ``pool3``...)."""
    index: dict[str, int] = {}
    block, within = 1, 0
    prev = -1
    for idx, _ in VGG16_CONVS:
        if idx != prev + 2 and prev >= 0:  # a max pool sits between blocks
            index[f"pool{block}"] = prev + 2
            block, within = block + 1, 0
        within += 1
        index[f"conv{block}_{within}"] = idx
        index[f"relu{block}_{within}"] = idx + 1
        prev = idx
    index[f"pool{block}"] = prev + 2
    return index


def vgg16_features() -> nn.Sequential:
    """An uninitialised module with torchvision's ``vgg16().features`` layout (non-inplace ReLUs)."""
    layers: list[nn.Module] = []
    cin = 3
    for idx, cout in VGG16_CONVS:
        while len(layers) < idx:  # pools between blocks
            layers.append(nn.MaxPool2d(2, 2))
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
        cin = cout
    layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class VGG16Features(nn.Module):
    """Frozen VGG16 trunk returning named feature maps of ImageNet-normalised inputs.

    State dict layout: ``features.{i}.{weight,bias}`` as in torchvision (only layers up to the deepest
    requested one are kept).

    Args:
        layers: names from :func:`vgg16_layer_index` (e.g. ``relu2_2``).
    """

    def __init__(self, layers: Sequence[str] = DEFAULT_LAYERS) -> None:
        super().__init__()
        names = vgg16_layer_index()
        unknown = [name for name in layers if name not in names]
        if unknown or not layers:
            raise ValueError(f"unknown VGG16 layers {unknown or list(layers)}; choose from {list(names)}")
        self.layers = tuple(layers)
        self._taps = {names[name]: name for name in self.layers}
        self.features = vgg16_features()[: max(self._taps) + 1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N,3,H,W) RGB in [0,1] -> {layer name: (N,C_l,H_l,W_l)}."""
        h = (x - self.mean) / self.std
        out = {}
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self._taps:
                out[self._taps[i]] = h
        return out


def build_vgg16_features(
    layers: Sequence[str] = DEFAULT_LAYERS,
    weights: str | Path | dict[str, torch.Tensor] | None = None,
) -> tuple[VGG16Features, str]:
    """A frozen, eval-mode :class:`VGG16Features` with real weights.

    Args:
        layers: feature layers to return.
        weights: a state dict in torchvision's ``features.*`` layout, an explicit file for
            :func:`src.pretrained.vgg16.resolve_vgg16`, or None to resolve automatically.

    Returns:
        (net, source string).

    Raises:
        src.pretrained.weights.WeightsUnavailableError: no real weights found.
    """
    if isinstance(weights, dict):
        sd, source = weights, "state dict passed in"
    else:
        sd = resolve_vgg16(weights)
        source = describe()["vgg16"]
    net = VGG16Features(layers)
    n_layers = len(net.features)
    keep = {k: v for k, v in sd.items() if int(re.match(r"features\.(\d+)\.", k).group(1)) < n_layers}
    net.load_state_dict(keep, strict=True)
    net.eval().requires_grad_(False)
    return net, source


class PerceptualLoss(FrozenNetLoss):
    """L1 distance between VGG16 feature maps (ImageNet weights), for images in [0,1].

    ``loss = sum_l layer_weights[l] * mean |f_l(pred) - f_l(target)|`` over the chosen layers. With a
    mask, both images are multiplied by it first (background then matches exactly). The network is
    frozen, always in eval mode, and not part of ``parameters()`` / ``state_dict()``; gradients flow to
    the inputs.

    Args:
        layers: VGG16 layer names (default relu1_2, relu2_2, relu3_3, relu4_3).
        layer_weights: per-layer weights (default 1 each).
        weights: explicit weights file or state dict (see :func:`build_vgg16_features`), None = resolve.
        net: an already built :class:`VGG16Features` to share (then ``layers``/``weights`` are ignored).
        source: provenance string when ``net`` is given.

    Raises:
        src.pretrained.weights.WeightsUnavailableError: no real VGG16 weights found.
    """

    def __init__(
        self,
        layers: Sequence[str] = DEFAULT_LAYERS,
        layer_weights: Sequence[float] | None = None,
        weights: str | Path | dict[str, torch.Tensor] | None = None,
        net: VGG16Features | None = None,
        source: str = "shared network",
    ) -> None:
        super().__init__()
        if net is None:
            net, source = build_vgg16_features(tuple(layers), weights)
        self.hold(net)
        self.source = source
        self.layers = net.layers
        lw = [1.0] * len(self.layers) if layer_weights is None else [float(w) for w in layer_weights]
        if len(lw) != len(self.layers):
            raise ValueError(f"{len(lw)} layer_weights for {len(self.layers)} layers {self.layers}")
        self.layer_weights = tuple(lw)

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """Perceptual distance.

        Args:
            pred: (N,3,H,W) images in [0,1].
            target: (N,3,H,W) images in [0,1].
            mask: optional (N,1,H,W) weights in [0,1] applied to both images before the network.
            reduction: "mean" for a () scalar (mean over the batch), "none" for (N,).

        Returns:
            () or (N,); 0 for identical inputs.
        """
        fp, ft = self.features(pred, target, mask)
        per_image = pred.new_zeros(pred.shape[0])
        for name, w in zip(self.layers, self.layer_weights):
            per_image = per_image + w * (fp[name] - ft[name]).abs().flatten(1).mean(1)
        if reduction == "none":
            return per_image
        if reduction != "mean":
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        return per_image.mean()
