"""Photometric and silhouette terms."""

from __future__ import annotations

import torch


def rgb_l1(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute colour error.

    Args:
        pred: (B,3,H,W) predicted image.
        target: (B,3,H,W) ground truth.
        weight: optional (B,1,H,W) per-pixel weight (e.g. a mask or semantic weighting); the mean is
            taken over weighted pixels.

    Returns:
        () scalar.
    """
    err = (pred - target).abs()
    if weight is None:
        return err.mean()
    w = weight.expand_as(err)
    return (err * w).sum() / w.sum().clamp_min(1e-8)


def silhouette_loss(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between rendered alpha and the foreground mask.

    Args:
        alpha: (B,1,H,W) rendered coverage in [0,1].
        mask: (B,1,H,W) target foreground in [0,1].

    Returns:
        () scalar.
    """
    return (alpha - mask).abs().mean()
