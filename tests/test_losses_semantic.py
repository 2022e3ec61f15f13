"""Semantic region agreement and semantically weighted L1 against loops."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import pytest
import torch

from src.core.layout import SEG_LABELS
from src.headmodel.regions import FLAME_REGION_LABELS, ICT_REGION_LABELS
from src.losses import masked_l1, region_label_matrix, rgb_l1, semantic_loss
from src.utils.assets import AssetNotFoundError, find_asset

ICT_REGIONS = list(ICT_REGION_LABELS)


def semantic_loop(probs, target, allowed, valid=None):
    B, K, H, W = probs.shape
    num = den = 0.0
    for b in range(B):
        for y in range(H):
            for x in range(W):
                v = 1.0 if valid is None else float(valid[b, y, x])
                lab = int(target[b, y, x])
                bad = sum(float(probs[b, k, y, x]) for k in range(K) if not bool(allowed[k, lab]))
                num, den = num + v * bad, den + v
    return num / den


def soft_regions(B, K, H, W, seed=0):
    g = torch.Generator().manual_seed(seed)
    alpha = torch.rand(B, 1, H, W, generator=g)
    return torch.softmax(3 * torch.randn(B, K, H, W, generator=g), dim=1) * alpha


def test_ict_mapping_covers_the_ict_regions_and_labels():
    allowed = region_label_matrix(ICT_REGIONS, ICT_REGION_LABELS)
    assert allowed.shape == (len(ICT_REGIONS), len(SEG_LABELS)) and allowed.dtype == torch.bool
    assert not allowed[:, SEG_LABELS.index("background")].any()
    assert allowed.any(1).all()
    row = dict(zip(ICT_REGIONS, allowed))
    assert row["teeth"][SEG_LABELS.index("teeth")] and not row["teeth"][SEG_LABELS.index("skin")]
    assert row["eyeball_left"].sum() == 1 and row["eyeball_left"][SEG_LABELS.index("eyes")]
    with pytest.raises(KeyError, match="no allowed labels"):
        region_label_matrix(["face", "ears"], ICT_REGION_LABELS)
    with pytest.raises(KeyError, match="unknown label"):
        region_label_matrix(["face"], {"face": ["skin", "beard"]})


def test_flame_mapping_uses_known_labels_only():
    allowed = region_label_matrix(list(FLAME_REGION_LABELS), FLAME_REGION_LABELS)
    assert allowed.any(1).all() and not allowed[:, SEG_LABELS.index("background")].any()


def test_ict_mapping_matches_the_head_model_region_names():
    try:
        find_asset("ict_facekit/ict_facekit_light.npz")
    except AssetNotFoundError:
        pytest.skip("ICT-FaceKit asset not available (set AVATAR_ASSETS)")
    import numpy as np

    with np.load(find_asset("ict_facekit/ict_facekit_light.npz")) as npz:
        names = [str(s) for s in npz["region_names"]]
    assert names == ICT_REGIONS


@pytest.mark.parametrize("use_valid", [False, True])
def test_semantic_loss_matches_loop(use_valid):
    B, H, W = 2, 6, 7
    K = len(ICT_REGIONS)
    probs = soft_regions(B, K, H, W)
    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, len(SEG_LABELS), (B, H, W), generator=g)
    allowed = region_label_matrix(ICT_REGIONS, ICT_REGION_LABELS)
    valid = torch.rand(B, H, W, generator=g) > 0.3 if use_valid else None
    out = semantic_loss(probs, target, allowed, valid)
    assert out.shape == ()
    assert out.item() == pytest.approx(semantic_loop(probs, target, allowed, valid), rel=1e-5)
    if use_valid:  # (B,1,H,W) float weights are accepted too
        torch.testing.assert_close(out, semantic_loss(probs, target, allowed, valid[:, None].float()))


def test_semantic_loss_zero_when_consistent_and_gradient_sign():
    K, C = 3, len(SEG_LABELS)
    allowed = torch.zeros(K, C, dtype=torch.bool)
    allowed[0, 1] = allowed[1, 8] = allowed[2, 5] = True  # skin, teeth, eyes
    target = torch.tensor([[[1, 8, 5, 0]]])  # (1,1,4)
    probs = torch.zeros(1, K, 1, 4)
    probs[0, 0, 0, 0] = probs[0, 1, 0, 1] = probs[0, 2, 0, 2] = 1.0
    assert semantic_loss(probs, target, allowed).item() == 0.0
    probs.requires_grad_(True)
    semantic_loss(probs, target, allowed).backward()
    assert probs.grad[0, :, 0, 3].gt(0).all()  # any region over background is penalised
    assert probs.grad[0, 0, 0, 0] == 0 and probs.grad[0, 1, 0, 0] > 0  # teeth over skin
    with pytest.raises(ValueError, match="allowed must be"):
        semantic_loss(probs, target, allowed[:2])  # 3 channels, 2 rows


def l1_loop(pred, target, mask, semantic, cw):
    B, _, H, W = pred.shape
    num = den = 0.0
    for b in range(B):
        for y in range(H):
            for x in range(W):
                w = float(mask[b, 0, y, x]) * (1.0 if cw is None else float(cw[semantic[b, y, x]]))
                num += w * float((pred[b, :, y, x] - target[b, :, y, x]).abs().mean())
                den += w
    return num / den


def test_masked_l1_matches_loop_and_rgb_l1():
    g = torch.Generator().manual_seed(4)
    B, H, W = 2, 5, 6
    pred, target = torch.rand(2, B, 3, H, W, generator=g)
    mask = (torch.rand(B, 1, H, W, generator=g) > 0.4).float()
    semantic = torch.randint(0, len(SEG_LABELS), (B, H, W), generator=g)
    cw = torch.rand(len(SEG_LABELS), generator=g) * 3
    out = masked_l1(pred, target, mask, semantic, cw)
    assert out.item() == pytest.approx(l1_loop(pred, target, mask, semantic, cw), rel=1e-5)
    torch.testing.assert_close(masked_l1(pred, target, mask), rgb_l1(pred, target, mask))
    torch.testing.assert_close(masked_l1(pred, target), (pred - target).abs().mean())
    assert masked_l1(pred, pred, mask, semantic, cw).item() == 0.0
    torch.testing.assert_close(masked_l1(pred, target, mask, None, cw), rgb_l1(pred, target, mask))
