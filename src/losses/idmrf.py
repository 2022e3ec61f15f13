"""Implicit diversified Markov random field loss (ID-MRF, Wang et al., NeurIPS 2018) on VGG16 features.

ID-MRF compares two feature maps as *sets* of local feature vectors: every target location should be the
clear nearest neighbour of some generated location, relative to how close that generated location is to
all other target locations. It rewards generated images that reuse the target's local structures (texture,
high-frequency detail) without requiring pixel alignment, and penalises collapsing many generated
locations onto a few target ones.

As in the widely used implementation, patches are 1x1 (one feature vector per location); the features
come from a frozen ImageNet VGG. The paper uses VGG19 ``conv3_2``/``conv4_2``; VGG19 ImageNet weights are
not available on this project's machines, so :class:`IDMRFLoss` uses VGG16 ``relu3_2``/``relu4_2`` (same
depth and resolution) with the real VGG16 weights from :func:`src.losses.perceptual.build_vgg16_features`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from src.losses.frozen import FrozenNetLoss
from src.losses.perceptual import VGG16Features, build_vgg16_features

DEFAULT_IDMRF_LAYERS = {"relu3_2": 1.0, "relu4_2": 1.0}


def _subsample(x: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """(N,C,L) -> (N,C,k): the same random subset of k locations for every sample."""
    idx = torch.randperm(x.shape[2], generator=generator, device="cpu")[:k].to(x.device)
    return x.index_select(2, idx)


def idmrf_distance(
    gen: torch.Tensor,
    tgt: torch.Tensor,
    bandwidth: float = 0.5,
    eps: float = 1e-5,
    max_patches: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """ID-MRF loss between two feature maps, one value per sample (1x1 patches).

    With G = Hg*Wg generated and T = Ht*Wt target locations per sample:

    1. Centre: subtract the target's per-channel mean over space, mu (N,C,1,1), from both maps.
    2. Normalise every location's C-vector to unit L2 norm: g (N,C,G), t (N,C,T).
    3. Cosine similarity of every pair by a batched matmul: cos = g^T t, (N,G,T).
    4. Distance d = 1 - cos in [0,2], (N,G,T). (The common implementation uses (1 - cos)/2, which only
       rescales ``eps`` below.)
    5. Relative distance d_rel[g,t] = d[g,t] / (min_t' d[g,t'] + eps), (N,G,T): >= 0, about 1 for the
       nearest target of each generated location and large for the others.
    6. Similarity w[g,t] = exp((1 - d_rel[g,t]) / bandwidth), normalised over target locations so that
       sum_t w[g,t] = 1 (computed as a softmax of -d_rel/bandwidth over t: the same numbers, stable).
    7. For each target location the best match over generated locations: m[t] = max_g w[g,t], (N,T).
    8. loss = -log(mean_t m[t]), (N,). Since each row of w sums to 1, mean_t m >= 1/T, so the loss lies
       in [0, log T]; it is ~0 when every target location is the unambiguous match of some generated one
       (e.g. ``gen == tgt`` with distinct target vectors).

    Memory: the (G x T) matrices (similarity, distance, relative distance, weights, several kept for
    backward) cost about 5 * G * T floats per sample, e.g. 64x64 maps (a 256 px image at relu3_2) give
    5 * 4096^2 * 4 B = 335 MB per sample. ``max_patches`` bounds this by using a random subset of
    locations.

    Args:
        gen: (N,C,Hg,Wg) generated features (gradients flow to it).
        tgt: (N,C,Ht,Wt) target features.
        bandwidth: h in step 6 (0.5 in the paper's code).
        eps: the stabiliser in step 5.
        max_patches: if set and a map has more locations, a random subset of this many locations of that
            map is used (the same subset for all samples; the same one for both maps when they have equal
            size, so ``gen == tgt`` still gives ~0). The centring mean always uses all target locations.
        generator: optional random generator for that subset (sampled on the CPU).

    Returns:
        (N,) loss per sample, >= 0.
    """
    if gen.ndim != 4 or tgt.ndim != 4 or gen.shape[:2] != tgt.shape[:2]:
        shapes = f"{tuple(gen.shape)}, {tuple(tgt.shape)}"
        raise ValueError(f"expected (N,C,H,W) maps with equal N and C, got {shapes}")
    n, c = gen.shape[:2]
    mu = tgt.mean(dim=(2, 3), keepdim=True)  # (N,C,1,1)
    g = F.normalize((gen - mu).reshape(n, c, -1), dim=1)  # (N,C,G)
    t = F.normalize((tgt - mu).reshape(n, c, -1), dim=1)  # (N,C,T)
    if max_patches is not None:
        if max_patches < 1:
            raise ValueError(f"max_patches must be >= 1, got {max_patches}")
        if g.shape[2] == t.shape[2] and g.shape[2] > max_patches:
            idx = torch.randperm(g.shape[2], generator=generator, device="cpu")[:max_patches].to(g.device)
            g, t = g.index_select(2, idx), t.index_select(2, idx)
        else:
            if g.shape[2] > max_patches:
                g = _subsample(g, max_patches, generator)
            if t.shape[2] > max_patches:
                t = _subsample(t, max_patches, generator)
    cos = torch.bmm(g.transpose(1, 2), t)  # (N,G,T)
    d = (1.0 - cos).clamp_min(0.0)  # (N,G,T)
    d_rel = d / (d.amin(dim=2, keepdim=True) + eps)  # (N,G,T)
    w = torch.softmax(-d_rel / bandwidth, dim=2)  # (N,G,T), rows sum to 1 over target locations
    m = w.amax(dim=1)  # (N,T): best generated match of each target location
    return -torch.log(m.mean(dim=1))  # (N,)


class IDMRFLoss(FrozenNetLoss):
    """ID-MRF loss (L_mrf) on frozen VGG16 features of images in [0,1].

    ``loss = mean_n sum_l layer_weights[l] * idmrf_distance(f_l(pred_n), f_l(target_n))``. The paper uses
    VGG19 conv3_2/conv4_2; VGG19 ImageNet weights are unavailable on this project's machines, so the
    backbone is VGG16 (default layers relu3_2 and relu4_2, weight 1 each) with real ImageNet weights.
    With a mask both images are multiplied by it first. The network is frozen, always in eval mode and not
    part of ``parameters()`` / ``state_dict()`` (a plain attribute, moved along by ``_apply``), exactly
    like :class:`src.losses.perceptual.PerceptualLoss`; gradients flow to the inputs.

    Args:
        layers: {VGG16 layer name: weight}, default {"relu3_2": 1.0, "relu4_2": 1.0}.
        weights: explicit VGG16 weights file or state dict (see
            :func:`src.losses.perceptual.build_vgg16_features`), None = resolve automatically.
        net: an already built :class:`VGG16Features` to share; it must return all of ``layers``
            (``weights`` is then ignored).
        source: provenance string when ``net`` is given.
        bandwidth: see :func:`idmrf_distance`.
        eps: see :func:`idmrf_distance`.
        max_patches: see :func:`idmrf_distance` (None = all locations).

    Raises:
        src.pretrained.weights.WeightsUnavailableError: no real VGG16 weights found.
        ValueError: unknown layer names, or a shared ``net`` lacking a requested layer.
    """

    def __init__(
        self,
        layers: Mapping[str, float] | None = None,
        weights: str | Path | dict[str, torch.Tensor] | None = None,
        net: VGG16Features | None = None,
        source: str = "shared network",
        bandwidth: float = 0.5,
        eps: float = 1e-5,
        max_patches: int | None = None,
    ) -> None:
        super().__init__()
        layers = dict(DEFAULT_IDMRF_LAYERS if layers is None else layers)
        if not layers:
            raise ValueError("IDMRFLoss needs at least one layer")
        if net is None:
            net, source = build_vgg16_features(tuple(layers), weights)
        missing = [name for name in layers if name not in net.layers]
        if missing:
            raise ValueError(f"shared VGG16Features returns {net.layers}, not the requested layers {missing}")
        self.hold(net)
        self.source = source
        self.layers = tuple(layers)
        self.layer_weights = tuple(float(layers[name]) for name in self.layers)
        self.bandwidth, self.eps, self.max_patches = float(bandwidth), float(eps), max_patches

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """ID-MRF loss between generated and target images.

        Args:
            pred: (N,3,H,W) generated images in [0,1].
            target: (N,3,H,W) target images in [0,1].
            mask: optional (N,1,H,W) weights in [0,1] applied to both images before the network.
            reduction: "mean" for a () scalar (mean over the batch), "none" for (N,).

        Returns:
            () or (N,); ~0 for identical inputs.
        """
        fp, ft = self.features(pred, target, mask)
        per_image = pred.new_zeros(pred.shape[0])
        for name, w in zip(self.layers, self.layer_weights):
            per_image = per_image + w * idmrf_distance(
                fp[name], ft[name], self.bandwidth, self.eps, self.max_patches
            )
        if reduction == "none":
            return per_image
        if reduction != "mean":
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        return per_image.mean()
