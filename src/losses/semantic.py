"""Terms that use the target segmentation (labels in :data:`src.core.layout.SEG_LABELS`).

``masked_l1`` weights the photometric error per semantic class; ``semantic_loss`` penalises rendered
head-model regions that land on pixels of a class they cannot show (e.g. the teeth region over skin).
Which labels a region may show is the head model's ``region_labels`` (see :mod:`src.headmodel.regions`):
``region_label_matrix(hm.region_names, hm.region_labels)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from src.core.layout import SEG_LABELS


def region_label_matrix(
    region_names: Sequence[str],
    mapping: Mapping[str, Sequence[str]],
    labels: Sequence[str] = SEG_LABELS,
) -> torch.Tensor:
    """The (K,C) allowed-label matrix for :func:`semantic_loss` from a region -> label-names mapping.

    Args:
        region_names: the K model region names, in the order of the rendered membership channels.
        mapping: region name -> allowed label names, e.g. the head model's ``region_labels``.
        labels: the C segmentation label names (index = label id).

    Returns:
        (K,C) bool, True where region k may appear over label c.

    Raises:
        KeyError: a region missing from the mapping, or a label name not in ``labels``.
    """
    missing = [r for r in region_names if r not in mapping]
    if missing:
        raise KeyError(f"regions {missing} have no allowed labels in the mapping (keys: {sorted(mapping)})")
    index = {name: i for i, name in enumerate(labels)}
    allowed = torch.zeros(len(region_names), len(labels), dtype=torch.bool)
    for k, region in enumerate(region_names):
        for name in mapping[region]:
            if name not in index:
                raise KeyError(f"region {region!r} allows unknown label {name!r}; labels are {list(labels)}")
            allowed[k, index[name]] = True
    return allowed


def semantic_loss(
    region_probs: torch.Tensor,
    target: torch.Tensor,
    allowed: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rendered region mass on pixels whose target label the region may not show.

    ``loss = sum_{b,h,w} v[b,h,w] * sum_k p[b,k,h,w] * (1 - allowed[k, target[b,h,w]]) / sum v``, i.e. the
    mean over (valid) pixels of the misplaced soft membership. Resolution independent; 0 when every
    region only covers allowed labels; at most max_{h,w} sum_k p (1 for a partition of unity).

    Args:
        region_probs: (B,K,H,W) rendered soft region membership (e.g. one-hot face regions interpolated
            and multiplied by coverage), differentiable.
        target: (B,H,W) long target segmentation with ids in ``0..C-1``.
        allowed: (K,C) bool (or float in [0,1]) from :func:`region_label_matrix` of the head model that
            rendered ``region_probs`` (channels in its ``region_names`` order).
        valid: optional (B,H,W) or (B,1,H,W) bool/float pixel weights (e.g. where segmentation is trusted).

    Returns:
        () scalar.
    """
    if region_probs.ndim != 4 or target.shape != (region_probs.shape[0], *region_probs.shape[2:]):
        raise ValueError(
            f"expected region_probs (B,K,H,W) and target (B,H,W), got {tuple(region_probs.shape)}, "
            f"{tuple(target.shape)}"
        )
    if allowed.ndim != 2 or allowed.shape[0] != region_probs.shape[1]:
        raise ValueError(f"allowed must be (K={region_probs.shape[1]},C), got {tuple(allowed.shape)}")
    penalty = 1.0 - allowed.to(region_probs)  # (K,C)
    per_pixel = penalty.T[target.long()]  # (B,H,W,K): the penalty of each region at each pixel's label
    misplaced = (region_probs * per_pixel.permute(0, 3, 1, 2)).sum(1)  # (B,H,W)
    if valid is None:
        return misplaced.mean()
    v = valid.reshape(misplaced.shape).to(misplaced)
    return (v * misplaced).sum() / v.sum().clamp_min(1e-8)


def masked_l1(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    semantic: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Photometric L1 over a mask with per-pixel weights from semantic labels.

    Pixel weight ``w = mask * class_weights[semantic]`` (``mask`` alone when either is None, so a subject
    without segmentation still trains, just without the class weighting);
    the result is ``sum_{b,c,h,w} w * |pred - target| / (3 * sum w)``, the mean absolute colour error over
    the weighted pixels.

    Args:
        pred: (B,3,H,W) rendered image.
        target: (B,3,H,W) ground-truth image.
        mask: (B,1,H,W) foreground weight in [0,1]; None for the whole image.
        semantic: (B,H,W) long labels (SEG_LABELS ids) or None.
        class_weights: (K,) per-label weights, K > max label id, or None.

    Returns:
        () scalar; 0 when every weight is 0.
    """
    B, _, H, W = pred.shape
    w = pred.new_ones(B, 1, H, W) if mask is None else mask.to(pred).expand(B, 1, H, W)
    if class_weights is not None and semantic is not None:
        w = w * class_weights.to(pred)[semantic.long()].reshape(B, 1, H, W)
    err = (pred - target).abs().mean(1, keepdim=True)  # (B,1,H,W)
    return (w * err).sum() / w.sum().clamp_min(1e-8)
