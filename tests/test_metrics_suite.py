"""ImageMetrics: PSNR/SSIM definitions, masked variants, missing weights, frozen networks."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import logging

import numpy as np
import pytest
import torch
from skimage import data, transform
from skimage.metrics import structural_similarity

import src.metrics.lpips as lpips_module
import src.metrics.suite as suite_module
from src.metrics import LPIPS, ImageMetrics, PSNRMetric, SSIMMetric, WeightsUnavailableError


def frames(n: int = 4, size: int = 64, noise: float = 0.05, seed: int = 0):
    """(n,3,size,size) astronaut crops, noisy predictions and elliptical (n,1,size,size) masks."""
    g = torch.Generator().manual_seed(seed)
    img = transform.resize(data.astronaut(), (2 * size, 2 * size), anti_aliasing=True).astype(np.float32)
    img = torch.from_numpy(img).permute(2, 0, 1)
    target = torch.stack([img[:, i * 8 : i * 8 + size, i * 12 : i * 12 + size] for i in range(n)])
    pred = (target + noise * torch.randn(target.shape, generator=g)).clamp(0, 1)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = []
    for i in range(n):
        r = size * (0.25 + 0.05 * i)
        masks.append((((yy - size / 2) / r) ** 2 + ((xx - size / 2) / (1.3 * r)) ** 2 <= 1).float())
    return pred, target, torch.stack(masks)[:, None]


@pytest.fixture(autouse=True)
def fresh_warnings():
    suite_module._WARNED.clear()
    yield
    suite_module._WARNED.clear()


def test_psnr_formula_and_masked_psnr_numpy():
    pred, target, mask = frames()
    metric = PSNRMetric()
    metric.update(pred[:2], target[:2])
    metric.update(pred[2:], target[2:])
    mse = ((pred - target) ** 2).double().mean(dim=(1, 2, 3))
    assert metric.compute().item() == pytest.approx((10 * torch.log10(1 / mse)).mean().item(), abs=1e-6)

    masked = PSNRMetric(masked=True)
    masked.update(pred, target, mask)
    p, t, m = pred.double().numpy(), target.double().numpy(), mask.double().numpy()
    expected = []
    for i in range(len(p)):
        fg = m[i, 0] > 0.5
        err = (p[i][:, fg] - t[i][:, fg]) ** 2  # (3, n_fg): all channels of foreground pixels
        expected.append(10 * np.log10(1.0 / err.mean()))
    assert masked.compute().item() == pytest.approx(np.mean(expected), abs=1e-6)

    masked.reset()
    masked.update(pred, target, torch.zeros_like(mask))  # empty masks are skipped
    with pytest.raises(ValueError, match="no images"):
        masked.compute()


def test_ssim_matches_skimage():
    pred, target, _ = frames(noise=0.1)
    metric = SSIMMetric()
    metric.update(pred, target)
    ref = [
        structural_similarity(
            p.permute(1, 2, 0).double().numpy(),
            t.permute(1, 2, 0).double().numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
        for p, t in zip(pred, target)
    ]
    assert metric.compute().item() == pytest.approx(np.mean(ref), abs=1e-4)


def test_image_metrics_all_and_frozen():
    try:
        metrics = ImageMetrics(
            lpips=True, fid=True, required=True, csim=False
        )  # CSIM: test_metrics_csim_dlib
    except WeightsUnavailableError as err:
        pytest.skip(f"weights unavailable here: {err}")
    assert list(metrics.parameters()) == [] and metrics.state_dict() == {}
    metrics.train()
    assert not metrics.metrics["lpips"].net.training and not metrics.metrics["fid"].feature_extractor.training
    pred, target, mask = frames()
    metrics.update(pred[:2], target[:2], mask[:2])
    metrics.update(pred[2:], target[2:], mask[2:])
    res = metrics.compute()
    expected = {"psnr", "ssim", "lpips", "fid", "psnr_masked", "ssim_masked", "lpips_masked", "fid_masked"}
    assert expected <= set(res) and res["num_frames"] == 4 and res["num_frames_masked"] == 4
    assert set(res["sources"]) == {"lpips", "fid", "csim"} and res["sources"]["csim"] == "disabled"
    lp = LPIPS(net=metrics.metrics["lpips"].net)
    with torch.no_grad():
        assert res["lpips"] == pytest.approx(lp(pred, target).mean().item(), abs=1e-6)
        assert res["lpips_masked"] == pytest.approx(lp(pred * mask, target * mask).mean().item(), abs=1e-6)
    assert res["fid"] > 0 and res["fid_masked"] > 0
    assert res["psnr_masked"] != res["psnr"]

    metrics.reset()
    metrics.update(pred, target)  # no masks: no masked keys
    res = metrics.compute()
    assert "psnr_masked" not in res and "lpips_masked" not in res and "fid" in res


def test_missing_weights_optional_warns_once_and_leaves_out(monkeypatch, caplog):
    def refuse(path=None):
        raise WeightsUnavailableError("no weights (test)")

    monkeypatch.setattr(lpips_module, "resolve_lpips_alexnet", refuse)
    monkeypatch.setattr(suite_module, "resolve_inception", refuse)
    pred, target, mask = frames(n=2)
    with caplog.at_level(logging.WARNING, logger="src.metrics.suite"):
        for _ in range(2):
            metrics = ImageMetrics.from_config({"lpips": True, "fid": True, "required": False})
            metrics.update(pred, target, mask)
            res = metrics.compute()
    assert not any(k.startswith(("lpips", "fid")) for k in res)
    assert {"psnr", "ssim", "psnr_masked", "ssim_masked"} <= set(res)
    assert res["sources"]["lpips"].startswith("unavailable") and res["sources"]["fid"].startswith(
        "unavailable"
    )
    lines = [r.getMessage() for r in caplog.records]
    assert sum("LPIPS left out" in m for m in lines) == 1 and sum("FID left out" in m for m in lines) == 1

    with pytest.raises(WeightsUnavailableError, match="required"):
        ImageMetrics(lpips=True, fid=False, required=True)


def test_disabled_metrics_and_bad_shapes():
    metrics = ImageMetrics.from_config({"lpips": False, "fid": False, "csim": False})
    assert metrics.names == ["psnr", "ssim", "psnr_masked", "ssim_masked"]
    pred, target, mask = frames(n=2)
    with pytest.raises(ValueError, match="mask"):
        metrics.update(pred, target, mask[:, :, :10])
    with pytest.raises(ValueError, match="pred/target"):
        metrics.update(pred, target[:, :2])
    metrics.update(pred, target, mask[:, 0])  # (B,H,W) masks are accepted
    assert metrics.compute()["sources"] == {"lpips": "disabled", "fid": "disabled", "csim": "disabled"}


def test_padded_pixels_count_nowhere():
    """A crop padded past the video frame: PSNR/SSIM average over the valid pixels only (against a loop),
    the networks see no error there, and an all-valid map changes nothing."""
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 24, 24, generator=g), torch.rand(2, 3, 24, 24, generator=g)
    mask = (torch.rand(2, 1, 24, 24, generator=g) > 0.5).float()
    valid = torch.ones(2, 1, 24, 24)
    valid[..., :6] = 0
    m = ImageMetrics(lpips=False, fid=False, csim=False)
    m.update(pred, target, mask, valid=valid)
    got = m.compute()
    psnr, psnr_m = [], []
    for b in range(2):
        err = [(pred[b, c, y, x] - target[b, c, y, x]).item() ** 2 for c in range(3) for y in range(24)
               for x in range(6, 24)]  # fmt: skip
        psnr.append(-10 * np.log10(np.mean(err)))
        err_m = [(pred[b, c, y, x] - target[b, c, y, x]).item() ** 2 for c in range(3) for y in range(24)
                 for x in range(6, 24) if mask[b, 0, y, x] > 0]  # fmt: skip
        psnr_m.append(-10 * np.log10(np.mean(err_m)))
    assert got["psnr"] == pytest.approx(np.mean(psnr), abs=1e-6)
    assert got["psnr_masked"] == pytest.approx(np.mean(psnr_m), abs=1e-6)
    spoiled = pred.clone()
    spoiled[..., :6] = 1 - target[..., :6]  # anything at all on the padded pixels
    m2 = ImageMetrics(lpips=False, fid=False, csim=False)
    m2.update(spoiled, target, mask, valid=valid)
    assert m2.compute()["ssim"] == pytest.approx(got["ssim"], abs=1e-9)
    a, b = ImageMetrics(lpips=False, fid=False, csim=False), ImageMetrics(lpips=False, fid=False, csim=False)
    a.update(pred, target, mask)
    b.update(pred, target, mask, valid=torch.ones(2, 1, 24, 24))
    ra, rb = a.compute(), b.compute()
    assert all(ra[k] == rb[k] for k in ("psnr", "ssim", "psnr_masked", "ssim_masked"))
