"""Normal-map terms against explicit per-pixel loops."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import pytest
import torch

from src.losses import erode_mask, image_laplacian, laplacian_normal_loss, normal_consistency
from src.losses.geometry import LAPLACIAN_KERNELS


def normals(B=2, H=9, W=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = torch.randn(B, 3, H, W, generator=g)
    n[:, 2] = n[:, 2].abs() + 0.5
    return n


def unit(v):
    return v / max(float(v.norm()), 1e-8)


def consistency_loop(r, t, m):
    num = den = 0.0
    B, _, H, W = r.shape
    for b in range(B):
        for y in range(H):
            for x in range(W):
                cos = float(unit(r[b, :, y, x]) @ unit(t[b, :, y, x]))
                num, den = num + float(m[b, 0, y, x]) * (1 - cos), den + float(m[b, 0, y, x])
    return num / den


def laplacian_loop(r, t, m, connectivity=4):
    """Normalise, erode the mask by 1 (border = outside), compare 3x3 Laplacians pixel by pixel."""
    k = LAPLACIAN_KERNELS[connectivity]
    B, _, H, W = r.shape
    num = den = 0.0
    for b in range(B):
        nr = [[unit(r[b, :, y, x]) for x in range(W)] for y in range(H)]
        nt = [[unit(t[b, :, y, x]) for x in range(W)] for y in range(H)]
        for y in range(1, H - 1):
            for x in range(1, W - 1):
                me = min(float(m[b, 0, y + dy, x + dx]) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
                if me == 0:
                    continue
                lr = sum(k[dy + 1][dx + 1] * nr[y + dy][x + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
                lt = sum(k[dy + 1][dx + 1] * nt[y + dy][x + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
                num, den = num + me * float((lr - lt).abs().sum()), den + me
    return num / den


def test_normal_consistency_matches_loop_and_limits():
    r, t = normals(seed=0), normals(seed=1)
    m = (torch.rand(2, 1, 9, 8, generator=torch.Generator().manual_seed(2)) > 0.3).float()
    assert normal_consistency(r, t, m).item() == pytest.approx(consistency_loop(r, t, m), rel=1e-5)
    assert normal_consistency(r, 3.0 * r, m).item() == pytest.approx(0.0, abs=1e-6)  # length-blind
    assert normal_consistency(r, -r).item() == pytest.approx(2.0, abs=1e-6)
    r.requires_grad_(True)
    normal_consistency(r, t, m).backward()
    assert torch.isfinite(r.grad).all() and r.grad.abs().sum() > 0


def test_erode_mask_matches_loop():
    m = (torch.rand(1, 1, 7, 9, generator=torch.Generator().manual_seed(3)) > 0.2).float()
    e = erode_mask(m, 1)
    for y in range(7):
        for x in range(9):
            inner = 0 < y < 6 and 0 < x < 8
            ref = (
                min(float(m[0, 0, y + dy, x + dx]) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) if inner else 0
            )
            assert float(e[0, 0, y, x]) == ref


@pytest.mark.parametrize("connectivity", [4, 8])
def test_laplacian_normal_loss_matches_loop(connectivity):
    r, t = normals(seed=4), normals(seed=5)
    m = torch.zeros(2, 1, 9, 8)
    m[:, :, 1:8, 1:7] = 1.0
    m[1, 0, 4, 4] = 0.0  # a hole
    m[0, 0, 2:5, 2:5] = 0.5  # soft weights
    out = laplacian_normal_loss(r, t, m, connectivity=connectivity)
    assert out.item() == pytest.approx(laplacian_loop(r, t, m, connectivity), rel=1e-5)


def test_laplacian_loss_ignores_low_frequency_bias_and_background():
    H, W = 12, 10
    ys, xs = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    base = normals(1, H, W, seed=6)
    ramp = torch.stack([0.05 * xs, -0.03 * ys, 0.02 * xs + 0.01 * ys])[None]  # Laplacian 0 inside
    m = torch.ones(1, 1, H, W)
    assert laplacian_normal_loss(base, base + ramp, m, normalize=False).item() == pytest.approx(0, abs=1e-6)
    assert laplacian_normal_loss(base, base + ramp, m, normalize=False, connectivity=8).item() < 1e-5
    # pixels outside the mask (and its 1-pixel rim) do not matter
    m = torch.zeros(1, 1, H, W)
    m[..., 2:10, 2:8] = 1
    other = base.clone()
    other[..., :1, :] = -other[..., :1, :]
    other[..., :, 9:] = 7.0
    torch.testing.assert_close(laplacian_normal_loss(base, other, m), laplacian_normal_loss(base, base, m))
    assert laplacian_normal_loss(base, base, m).item() == 0.0
    assert laplacian_normal_loss(base, normals(1, H, W, seed=7), m).item() > 0.1
    assert image_laplacian(torch.ones(1, 3, 5, 5))[0, :, 1:4, 1:4].abs().max() == 0
    with pytest.raises(ValueError):
        laplacian_normal_loss(base, base, m, erosion=0)
