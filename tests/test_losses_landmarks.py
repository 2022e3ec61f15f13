"""Landmark term against a per-landmark loop."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import math

import pytest
import torch

from src.losses import landmark_loss


def reference(pred, target, weights, valid, image_size, delta=None):
    s = max(image_size)
    num = den = 0.0
    B, L, _ = pred.shape
    for b in range(B):
        for i in range(L):
            w = (1.0 if weights is None else float(weights[i])) * (
                1.0 if valid is None else float(valid[b, i])
            )
            if w == 0:
                continue
            d = math.hypot((pred[b, i, 0] - target[b, i, 0]) / s, (pred[b, i, 1] - target[b, i, 1]) / s)
            far = delta is not None and d > delta / s
            pen = (delta / s) * (2 * d - delta / s) if far else d * d
            num, den = num + w * pen, den + w
    return num / den if den else 0.0


def data(seed=0, B=3, L=68, size=(120, 160)):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(B, L, 2, generator=g) * torch.tensor([size[1], size[0]])
    pred = target + 6 * torch.randn(B, L, 2, generator=g)
    weights = torch.rand(L, generator=g) + 0.5
    valid = torch.rand(B, L, generator=g) > 0.2
    return pred, target, weights, valid


@pytest.mark.parametrize("delta", [None, 4.0])
@pytest.mark.parametrize("use_w,use_v", [(False, False), (True, False), (True, True)])
def test_matches_loop(delta, use_w, use_v):
    pred, target, weights, valid = data()
    w = weights if use_w else None
    v = valid if use_v else None
    out = landmark_loss(pred, target, w, v, image_size=(120, 160), huber_delta=delta)
    assert out.shape == ()
    assert out.item() == pytest.approx(reference(pred, target, w, v, (120, 160), delta), rel=1e-5)


def test_resolution_independent_and_huber_continuity():
    pred, target, weights, valid = data(1)
    a = landmark_loss(pred, target, weights, valid, image_size=(120, 160))
    b = landmark_loss(pred * 4, target * 4, weights, valid, image_size=(480, 640))
    torch.testing.assert_close(a, b)
    # with a delta larger than every distance, Huber equals the squared distance
    big = landmark_loss(pred, target, weights, valid, image_size=(120, 160), huber_delta=1e4)
    torch.testing.assert_close(a, big)
    # the Huber value is continuous at d = delta
    t = torch.zeros(1, 1, 2)
    below = landmark_loss(torch.tensor([[[3.0 - 1e-4, 0.0]]]), t, image_size=(10, 10), huber_delta=3.0)
    above = landmark_loss(torch.tensor([[[3.0 + 1e-4, 0.0]]]), t, image_size=(10, 10), huber_delta=3.0)
    assert below.item() == pytest.approx(above.item(), rel=1e-3)
    assert below.item() == pytest.approx(0.09, rel=1e-3)


def test_invalid_nan_targets_do_not_leak_and_gradients():
    pred, target, weights, valid = data(2)
    target[~valid] = float("nan")
    pred.requires_grad_(True)
    out = landmark_loss(pred, target, weights, valid, image_size=(120, 160), huber_delta=2.0)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(pred.grad).all()
    assert (pred.grad[~valid] == 0).all() and pred.grad[valid].abs().sum() > 0
    none_valid = landmark_loss(pred, target, weights, torch.zeros_like(valid), image_size=(120, 160))
    assert none_valid.item() == 0.0 and none_valid.requires_grad


def test_errors():
    pred, target, _, _ = data()
    with pytest.raises(ValueError, match="image_size"):
        landmark_loss(pred, target)
    with pytest.raises(ValueError):
        landmark_loss(pred, target[:, :5], image_size=(10, 10))
    with pytest.raises(ValueError, match="weights"):
        landmark_loss(pred, target, torch.ones(5), image_size=(10, 10))
