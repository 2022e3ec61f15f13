"""Crop validity, the background plate (static, shifted and moving cameras) and the dataset keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.core.layout import SubjectLayout
from src.core.streams import BackgroundUnavailableError, landmark_visible, pixel_weight, read_background
from src.preprocess.background import estimate_plate, motion_px
from src.preprocess.detect import CropBox
from src.preprocess.validity import crop_valid_mask

VIDEOS = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "assets" / "videos"


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture with corners to track (uint8)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 8, w // 8, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _scene(n: int = 10, size: int = 128, shift: tuple[int, int] = (0, 0), seed: int = 0):
    """Frames of a background (moved by ``shift`` px per frame) behind a moving grey 'person' box."""
    big = _texture(size + 128, size + 128, seed)
    frames, masks = [], []
    for k in range(n):
        dx, dy = 64 - shift[0] * k, 64 - shift[1] * k
        f = big[dy : dy + size, dx : dx + size].copy()
        m = np.zeros((size, size), np.uint8)
        x0 = 30 + 3 * k
        m[40:size, x0 : x0 + 40] = 255
        f[m > 0] = 128
        frames.append(f)
        masks.append(m)
    return np.stack(frames), np.stack(masks), big


def test_valid_mask_of_a_crop_past_the_frame():
    # single_face.mp4's default crop: 363 px square from y=8 in a 360 px tall frame: 11 rows padded
    valid = crop_valid_mask(CropBox(114, 8, 363), (360, 640), 256)
    rows = np.nonzero((valid == 0).any(1))[0]
    assert rows.tolist() == list(range(248, 256)) and (valid == 0).sum() == 8 * 256
    assert (crop_valid_mask(CropBox(10, 10, 100), (360, 640), 64) == 255).all()
    left = crop_valid_mask(CropBox(-20, 0, 100), (360, 640), 200)  # upsampled: 40 columns + blend
    assert (left[:, :40] == 0).all() and (left[:, 42:] == 255).all()


def test_static_plate_is_the_background():
    frames, masks, big = _scene()
    res = estimate_plate(frames, masks, holdout=0, dilate_frac=0.02)
    truth = big[64 : 64 + 128, 64 : 64 + 128]
    seen = res.coverage > 0
    assert not res.moving and res.reason == "" and motion_px(res.motion, 128).max() < 0.5
    assert np.abs(res.plate[seen].astype(int) - truth[seen]).max() <= 2
    # columns 30..(30+3*9+40) hidden in some frames; the band always behind the box is never seen
    assert not seen[60:, 60:68].any() and seen[:36].all()
    assert np.abs(res.plate.astype(int) - 128).max() > 0  # inpainted, not left empty


def test_shifted_camera_is_compensated():
    frames, masks, big = _scene(shift=(1, 1))
    res = estimate_plate(frames, masks, holdout=0, dilate_frac=0.02)
    assert not res.moving
    np.testing.assert_allclose(res.motion[:, :, 2], np.outer(np.arange(10), [1, 1]), atol=0.3)
    truth = big[64 : 64 + 128, 64 : 64 + 128]
    seen = res.coverage > 0.5
    assert np.abs(res.plate[seen].astype(int) - truth[seen]).mean() < 3


def test_moving_camera_is_refused():
    frames, masks, _ = _scene(shift=(6, 0))  # 54 px over the clip: no common background left
    res = estimate_plate(frames, masks)
    assert res.moving and "camera is not static" in res.reason
    cut = np.concatenate([_scene(5, seed=1)[0], _scene(5, seed=2)[0]])  # the scene changes half-way
    res = estimate_plate(cut, np.concatenate([_scene(5)[1]] * 2), holdout=0)
    assert res.moving and "differ from the aligned plate" in res.reason


def test_loss_weights_from_a_batch():
    valid = torch.ones(2, 1, 8, 8)
    valid[:, :, -2:] = 0
    occ = torch.zeros(2, 1, 8, 8)
    occ[1, :, :4, :4] = 1
    lmk = torch.tensor([[[1.5, 1.5], [5.0, 7.5]], [[1.5, 1.5], [5.0, 3.0]]])
    batch = {"valid": valid, "occlusion": occ, "landmarks68": lmk}
    w = pixel_weight(batch)
    assert w.shape == (2, 1, 8, 8) and w[0].sum() == 48 and w[1].sum() == 32
    assert landmark_visible(batch).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert pixel_weight({}) is None


def test_missing_plate_says_why(tmp_path):
    layout = SubjectLayout(tmp_path)
    layout.write_meta({"complete": True, "available": {"background": False},
                       "absent": {"background": "the camera is not static: it moves by 40 px"}})  # fmt: skip
    assert read_background(layout) is None
    with pytest.raises(BackgroundUnavailableError, match="moves by 40 px.*learned background"):
        read_background(layout, required=True)


@pytest.mark.parametrize("shift, usable", [((1.0, 0.5), True), ((8.0, 0.0), False)])
def test_astronaut_over_a_moving_background(tmp_path, shift, usable):
    """Preprocessing the astronaut over a textured background that moves: compensated or refused."""
    from src.preprocess import preprocess_video
    from src.preprocess.clips import astronaut_over_moving_background
    from src.utils.video import write_video

    video = write_video(tmp_path / "cam.mp4", astronaut_over_moving_background(8, 256, shift))
    meta = preprocess_video(video, tmp_path / "s", {"resolution": 128, "min_frames": 3})
    layout = SubjectLayout(tmp_path / "s")
    assert meta["available"]["background"] is usable and meta["background"]["usable"] is usable
    if usable:
        side = meta["crop"]["box_xy_side"][2]
        motion = np.load(layout.background_motion_path)
        expect = np.outer(np.arange(8), shift) * 128 / side
        np.testing.assert_allclose(motion[:, :, 2], expect, atol=0.5)
        assert read_background(layout, 7).shape == (3, 128, 128) and meta["background"]["residual"] < 3
    else:
        assert not layout.background_path.exists() and read_background(layout) is None
        assert meta["absent"]["background"].startswith("the camera is not static")
        with pytest.raises(BackgroundUnavailableError, match="not static.*fixed camera"):
            read_background(layout, required=True)


@pytest.mark.slow
def test_single_face_clip(tmp_path):
    """The real clip: padded rows, a usable plate that predicts held-out background, no occlusion."""
    from src.core.streams import read_valid
    from src.preprocess import preprocess_video
    from src.preprocess.background import background_pixels

    meta = preprocess_video(VIDEOS / "single_face.mp4", tmp_path / "s", {})
    layout = SubjectLayout(tmp_path / "s")
    assert meta["valid"]["invalid_px"] == 2048 and meta["occlusion"]["frames"] == []
    assert meta["available"]["background"] and meta["background"]["max_motion_px"] > 5  # hand-held drift
    valid = read_valid(layout)
    err = []
    for i in range(56, 72):
        img = layout.read_image("frames", i).astype(np.float64)
        bg = background_pixels(layout.read_image("masks", i)[None], 8)[0] & valid
        plate = read_background(layout, i).permute(1, 2, 0).numpy() * 255
        err.append(((img - plate)[bg] ** 2).mean())
    assert 10 * np.log10(255**2 / np.mean(err)) > 35
