"""Mask term L_mask: mean absolute error between predicted and target foreground masks."""

from __future__ import annotations

import torch


def mask_mae(mask_pred: torch.Tensor, mask_target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between masks.

    Args:
        mask_pred: (N,1,H,W) predicted mask in [0,1].
        mask_target: (N,1,H,W) target mask in [0,1] (same shape).

    Returns:
        () scalar.
    """
    if mask_pred.shape != mask_target.shape:
        raise ValueError(f"mask shapes differ: {tuple(mask_pred.shape)} vs {tuple(mask_target.shape)}")
    return (mask_pred - mask_target).abs().mean()
