"""preprocess_video on small clips: the layout it writes, its errors, excluded frames, caching and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.core.layout import SEG_LABELS, SubjectLayout
from src.preprocess import (
    FaceTooSmallError,
    MultipleFacesError,
    NoFaceError,
    TooFewFramesError,
    preprocess_video,
)
from src.preprocess.clips import astronaut_frames
from src.preprocess.landmarks import disagreement, dlib_available, mediapipe_to_ibug68
from src.utils.video import write_video

SMALL = {"resolution": 128, "min_frames": 3}


@pytest.fixture(scope="module")
def astro_clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("astro") / "astro.mp4", astronaut_frames(6, 256))


@pytest.fixture(scope="module")
def astro_subject(astro_clip, tmp_path_factory):
    root = tmp_path_factory.mktemp("subjects") / "astro"
    return root, preprocess_video(astro_clip, root, SMALL)


def test_layout_of_a_real_face(astro_subject):
    root, meta = astro_subject
    layout = SubjectLayout(root)
    assert layout.validate()["n_frames"] == 6 and meta["source"] == "video"
    assert meta["available"] == {"masks": True, "segmentation": True, "normals": False, "landmarks68": True,
                                 "landmarks478": True, "tracking": False, "ground_truth": False,
                                 "valid": True, "background": meta["available"]["background"],
                                 "occlusion": True}  # fmt: skip
    assert "normals" in meta["absent"] and meta["landmarks68_source"] in (
        "dlib",
        "face_alignment",
        "mediapipe",
    )
    assert layout.read_image("frames", 5).shape == (128, 128, 3)
    lm68, lm478 = np.load(root / "landmarks68.npy"), np.load(root / "landmarks478.npy")
    assert lm68.shape == (6, 68, 2) and lm478.shape == (6, 478, 2) and lm68.dtype == np.float32
    # the face sits in the middle of the crop, eyes above the mouth
    assert 30 < lm68[:, 30, 0].mean() < 98 and lm68[:, 36:48, 1].mean() < lm68[:, 48:68, 1].mean()
    mask, seg = layout.read_image("masks", 0), layout.read_image("segmentation", 0)
    assert mask.dtype == np.uint8 and mask[64, 64] > 200 and mask[2, 2] < 128  # face in, corner out
    labels = {SEG_LABELS[i] for i in np.unique(seg)}
    assert {"skin", "eyes", "lips", "brows", "hair"} <= labels
    nose = lm68[0, 30].astype(int)
    assert SEG_LABELS[seg[nose[1], nose[0]]] == "skin"
    assert meta["timings"]["s_per_frame"] > 0 and meta["config_hash"]


def test_disagreement_is_a_fraction_of_the_face_width():
    rng = np.random.default_rng(0)
    mesh = rng.uniform(20, 120, (478, 2)).astype(np.float32)
    mapped = mediapipe_to_ibug68(mesh)
    width = float(np.ptp(mesh[:468, 0]))
    assert disagreement(mapped, mesh) == 0.0
    shifted = mapped + np.array([0.1 * width, 0.0], np.float32)
    assert disagreement(shifted, mesh) == pytest.approx(0.1, rel=1e-5)
    jaw_only = mapped.copy()
    jaw_only[:17] += 50.0  # the jaw contour is not compared
    assert disagreement(jaw_only, mesh) == 0.0


@pytest.mark.skipif(not dlib_available(), reason="dlib or its 68-point model is not installed")
def test_68_points_far_from_facemesh_fall_back_to_it(astro_clip, astro_subject, tmp_path):
    root, meta = astro_subject
    if meta["landmarks68_source"] != "dlib":
        pytest.skip(f"the 68-point backend here is {meta['landmarks68_source']}, not dlib")
    assert meta["landmarks68_fallback_frames"] == []  # a frontal real face: dlib and FaceMesh agree
    strict = preprocess_video(astro_clip, tmp_path / "strict", {**SMALL, "landmarks68_max_disagreement": 0.0})
    assert strict["landmarks68_fallback_frames"] == list(range(6))
    lm68, lm478 = (np.load(tmp_path / "strict" / f) for f in ("landmarks68.npy", "landmarks478.npy"))
    np.testing.assert_allclose(lm68, mediapipe_to_ibug68(lm478), atol=1e-4)
    assert not np.allclose(lm68, np.load(root / "landmarks68.npy"), atol=0.5)


def test_cached_and_rebuilt_on_other_settings(astro_clip, astro_subject):
    root, meta = astro_subject
    stamp = (root / "frames" / "000000.png").stat().st_mtime_ns
    again = preprocess_video(astro_clip, root, SMALL)
    assert again["config_hash"] == meta["config_hash"]
    assert (root / "frames" / "000000.png").stat().st_mtime_ns == stamp  # nothing rewritten


@pytest.mark.integration
def test_resume_after_interruption(astro_clip, tmp_path):
    root = tmp_path / "resume"
    cfg = {**SMALL, "keep_work": True}
    preprocess_video(astro_clip, root, cfg)
    stamp = (root / "frames" / "000002.png").stat().st_mtime_ns
    # simulate a crash before the end: meta not complete, the final arrays and the last frame missing
    meta = json.loads((root / "meta.json").read_text())
    meta["complete"] = False
    (root / "meta.json").write_text(json.dumps(meta))
    (root / "landmarks68.npy").unlink()
    (root / "frames" / "000005.png").unlink()
    (root / "work" / "lmk" / "000005.npz").unlink()
    out = preprocess_video(astro_clip, root, cfg)
    assert out["complete"] and out["n_frames"] == 6 and (root / "frames" / "000005.png").exists()
    assert (root / "frames" / "000002.png").stat().st_mtime_ns == stamp  # finished frames were kept
    other = preprocess_video(astro_clip, root, {**cfg, "max_frames": 4})
    assert other["n_frames"] == 4 and other["config_hash"] != out["config_hash"]
    assert not (root / "frames" / "000005.png").exists()  # a different configuration starts again


def test_frames_without_a_face_are_excluded_and_reported(tmp_path):
    frames = astronaut_frames(8, 256)
    frames[3:5] = 128  # two blank frames in the middle
    video = write_video(tmp_path / "gap.mp4", frames)
    meta = preprocess_video(video, tmp_path / "gap", SMALL)
    assert meta["n_frames"] == 6 and meta["excluded"]["no_face"] == [3, 4]
    assert meta["source_frames"] == [0, 1, 2, 5, 6, 7]


def test_blank_video_has_no_face(tmp_path):
    video = write_video(tmp_path / "blank.mp4", np.full((5, 96, 96, 3), 90, np.uint8))
    with pytest.raises(NoFaceError, match="no face found in any of its 5 frames"):
        preprocess_video(video, tmp_path / "blank", SMALL)


def test_two_faces_side_by_side(tmp_path):
    frames = astronaut_frames(4, 256)
    video = write_video(tmp_path / "two.mp4", np.concatenate([frames, frames[:, :, ::-1]], axis=2))
    with pytest.raises(MultipleFacesError, match="more than one face in frames 0-3.*one person"):
        preprocess_video(video, tmp_path / "two", SMALL)


def test_face_too_small(tmp_path):
    video = write_video(tmp_path / "far.mp4", astronaut_frames(4, 256, scale=0.5))
    with pytest.raises(FaceTooSmallError, match="smaller than 64 px in frames 0-3.*film closer"):
        preprocess_video(video, tmp_path / "far", SMALL)


def test_too_few_usable_frames(astro_clip, tmp_path):
    with pytest.raises(TooFewFramesError, match="only 6 of 6 frames usable.*need 10"):
        preprocess_video(astro_clip, tmp_path / "few", {**SMALL, "min_frames": 10})


def test_unknown_option_is_named(astro_clip, tmp_path):
    with pytest.raises(KeyError, match="unknown preprocessing option 'resolutoin'"):
        preprocess_video(astro_clip, tmp_path / "typo", {"resolutoin": 64})
