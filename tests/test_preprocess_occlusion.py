"""Occluders over the face: a skin-coloured block pasted over the astronaut clip is found and masked."""

from __future__ import annotations

import numpy as np
import pytest

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.core.layout import SubjectLayout
from src.core.streams import read_landmark_visibility
from src.datamodules.dataset import SubjectFrames
from src.preprocess import preprocess_video
from src.preprocess.clips import astronaut_frames
from src.preprocess.detect import CropBox, crop_frame
from src.utils.video import write_video

OCCLUDED = (2, 5)


def _occluded_clip() -> tuple[np.ndarray, dict[int, tuple[slice, slice]]]:
    """8 astronaut frames; in OCCLUDED a skin-coloured 'hand' covers the nose, a cheek and an eye."""
    frames = astronaut_frames(8, 256).copy()
    skin = np.array([170, 130, 101], np.uint8)  # the astronaut's cheek colour
    boxes = {}
    for i in OCCLUDED:
        box = (slice(80, 130), slice(120, 175))
        frames[i][box] = skin
        boxes[i] = box
    return frames, boxes


@pytest.fixture(scope="module")
def occluded_subject(tmp_path_factory):
    frames, boxes = _occluded_clip()
    base = tmp_path_factory.mktemp("occ")
    video = write_video(base / "hand.mp4", frames)
    root = base / "subject"
    return root, preprocess_video(video, root, {"resolution": 128, "min_frames": 3}), boxes


def test_occluder_found_in_its_frames_only(occluded_subject):
    root, meta, boxes = occluded_subject
    assert meta["occlusion"]["frames"] == list(OCCLUDED) and meta["available"]["occlusion"]
    layout = SubjectLayout(root)
    for i in range(meta["n_frames"]):
        occ = layout.read_image("occlusion", i) > 127
        if i not in OCCLUDED:
            assert not occ.any()
            continue
        truth = np.zeros((256, 256), bool)
        truth[boxes[i]] = True
        crop = CropBox(*meta["crop"]["box_xy_side"])
        truth = crop_frame(truth[..., None].astype(np.float32), crop, 128, "constant") > 0.5
        assert occ[truth].mean() > 0.6 and occ[~truth].mean() < 0.05


def test_landmarks_under_the_occluder_are_not_visible(occluded_subject):
    root, meta, _ = occluded_subject
    vis = read_landmark_visibility(SubjectLayout(root))
    assert vis.shape == (meta["n_frames"], 68)
    hidden = (vis == 0).sum(1)
    assert all(hidden[i] >= 5 for i in OCCLUDED)  # nose and eye points under the block
    assert all(hidden[i] == 0 for i in range(meta["n_frames"]) if i not in OCCLUDED)


def test_dataset_items_carry_the_masks(occluded_subject):
    root, meta, _ = occluded_subject
    ds = SubjectFrames(SubjectLayout(root), list(range(meta["n_frames"])), meta)
    item, hit = ds[0], ds[OCCLUDED[0]]
    assert item["valid"].shape == (1, 128, 128) and item["occlusion"].shape == (1, 128, 128)
    assert item["occluded"] == 0 and item["occlusion"].sum() == 0
    assert hit["occluded"] == 1 and hit["occlusion"].sum() > 50
    # the crop reaches above the 256 px frame: those rows are padded and invalid
    assert int((item["valid"] == 0).sum()) == meta["valid"]["invalid_px"] > 0
    assert (item["valid"][0, 0] == 0).all() and (item["valid"][0, -1] == 1).all()
    if meta["available"]["background"]:
        assert item["background"].shape == (3, 128, 128)
    else:
        assert "background" not in item and meta["absent"]["background"]
