"""2D landmark reprojection term."""

from __future__ import annotations

import torch


def landmark_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    image_size: tuple[int, int] | None = None,
    huber_delta: float | None = None,
) -> torch.Tensor:
    """Weighted mean squared landmark distance, resolution independent.

    Coordinates are divided by ``max(H, W)`` before measuring, so the same relative misfit gives the same
    value at any image size. Per landmark the penalty is the squared distance ``d^2``; with ``huber_delta``
    it becomes ``d^2`` for ``d <= delta`` and ``delta * (2 d - delta)`` beyond (twice the usual Huber, so
    it equals the squared distance below ``delta`` and grows linearly, with a continuous slope, above).
    The mean is taken over the weighted landmarks: ``sum(w * penalty) / sum(w)`` with
    ``w[b, l] = weights[l] * valid[b, l]``. Invalid landmarks may hold NaN/inf; they contribute no value
    and no gradient.

    Args:
        pred: (B,L,2) predicted landmarks in pixels (x, y).
        target: (B,L,2) detected / ground-truth landmarks in pixels.
        weights: optional (L,) non-negative per-landmark weights (e.g. higher on the mouth and eyes).
        valid: optional (B,L) bool, False for landmarks that were not detected.
        image_size: (H, W) of the image the pixel coordinates refer to. Required.
        huber_delta: optional Huber threshold in pixels (of ``image_size``); None for plain squares.

    Returns:
        () scalar; 0 (still attached to ``pred``) when no landmark has positive weight.

    Raises:
        ValueError: missing ``image_size`` or mismatched shapes.
    """
    if image_size is None:
        raise ValueError("landmark_loss needs image_size=(H, W) to normalise pixel coordinates")
    if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"expected two (B,L,2) tensors, got {tuple(pred.shape)} and {tuple(target.shape)}")
    B, L, _ = pred.shape
    scale = float(max(image_size))
    w = pred.new_ones(B, L)
    if weights is not None:
        if weights.shape != (L,):
            raise ValueError(f"weights must be ({L},), got {tuple(weights.shape)}")
        w = w * weights.to(pred)
    if valid is not None:
        if valid.shape != (B, L):
            raise ValueError(f"valid must be ({B},{L}), got {tuple(valid.shape)}")
        valid = valid.bool()
        w = w * valid.to(pred)
        # replace invalid targets so NaN/inf there cannot leak into the value or the gradient
        target = torch.where(valid[..., None], target, pred.detach())
    d2 = ((pred - target.to(pred)) / scale).pow(2).sum(-1)  # (B,L)
    if huber_delta is not None:
        delta = float(huber_delta) / scale
        if delta <= 0:
            raise ValueError(f"huber_delta must be positive, got {huber_delta}")
        far = delta * (2 * d2.clamp_min(delta * delta).sqrt() - delta)
        d2 = torch.where(d2 <= delta * delta, d2, far)
    return (w * d2).sum() / w.sum().clamp_min(1e-12)
