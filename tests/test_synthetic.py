"""The synthetic subject: trajectories, rendering, ground truth consistency, cache/resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from src.core.layout import SEG_LABELS, LayoutError, SubjectLayout
from src.datamodules.synthetic.generate import generate_subject
from src.datamodules.synthetic.trajectory import make_trajectory
from tests.helpers import TINY_GENERATOR

NAMES = ["jawOpen", "mouthSmile_L", "mouthSmile_R", "eyeBlink_L", "eyeBlink_R", "browInnerUp_L"]


def test_trajectory_deterministic_and_bounded():
    a = make_trajectory(NAMES, 200, seed=3)
    b = make_trajectory(NAMES, 200, seed=3)
    c = make_trajectory(NAMES, 200, seed=4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.allclose(a["expression"], c["expression"])
    assert a["expression"].min() >= 0 and a["expression"].max() <= 1
    # 8 s at 25 fps sweeps the yaw close to both limits
    assert np.rad2deg(a["yaw"]).max() > 40 and np.rad2deg(a["yaw"]).min() < -40
    assert np.abs(np.rad2deg(a["yaw"])).max() <= 45.0 + 1e-4
    # smooth: no frame-to-frame jump above 4 degrees
    assert np.rad2deg(np.abs(np.diff(a["yaw"]))).max() < 4
    # a longer sequence extends a shorter one (same seed, same first frames)
    short = make_trajectory(NAMES, 50, seed=3)
    for k in a:
        np.testing.assert_allclose(short[k], a[k][:50], atol=1e-6)
    # blinks happen and close the eyes fully
    assert a["expression"][:, NAMES.index("eyeBlink_L")].max() > 0.95


def test_subject_files_and_ground_truth(tiny_subject, ict_model):
    layout = SubjectLayout(tiny_subject)
    meta = layout.validate()
    n, res = TINY_GENERATOR["n_frames"], TINY_GENERATOR["resolution"]
    assert meta["n_frames"] == n and meta["height"] == res and meta["complete"]
    img = layout.read_image("frames", 0)
    mask = layout.read_image("masks", 0)
    seg = layout.read_image("segmentation", 0)
    nrm = layout.read_image("normals", 0)
    assert img.shape == (res, res, 3) and mask.shape == (res, res) and seg.shape == (res, res)
    assert 0.1 < (mask > 127).mean() < 0.9, "the head should fill a good part of the frame"
    assert seg.max() < len(SEG_LABELS)
    labels_seen = set(
        np.unique(np.concatenate([layout.read_image("segmentation", i).ravel() for i in range(n)]))
    )
    assert {SEG_LABELS.index("skin"), SEG_LABELS.index("hair"), SEG_LABELS.index("background")} <= labels_seen
    # segmentation background agrees with the mask
    assert ((seg == 0) == (mask < 128)).mean() > 0.95
    # normals are unit vectors on the foreground
    n_vec = nrm[mask > 250].astype(np.float32) / 255 * 2 - 1
    assert np.abs(np.linalg.norm(n_vec, axis=-1) - 1).mean() < 0.05

    gt = layout.read_params("ground_truth")
    assert gt["expression"].shape == (n, ict_model.n_expression)
    verts = np.load(tiny_subject / "ground_truth" / "vertices.npy")
    with torch.no_grad():
        again = ict_model(
            torch.from_numpy(gt["identity"])[None].expand(n, -1), torch.from_numpy(gt["expression"]),
            torch.from_numpy(gt["rotation"]), torch.from_numpy(gt["translation"]),
        )  # fmt: skip
    np.testing.assert_allclose(verts, again.numpy(), atol=1e-5)
    # the 2D landmarks are the projections of the landmark vertices with the stored camera
    lmk2d = np.load(tiny_subject / "landmarks68.npy")
    lmk3d = ict_model.landmarks(torch.from_numpy(verts)).numpy()
    cam = (lmk3d @ gt["R"].T + gt["t"]) @ gt["K"].T
    np.testing.assert_allclose(lmk2d, cam[..., :2] / cam[..., 2:], atol=1e-3)
    # landmarks fall on the foreground mask
    m0 = layout.read_image("masks", 0)
    xy = np.clip(lmk2d[0].astype(int), 0, res - 1)
    assert (m0[xy[:, 1], xy[:, 0]] > 0).mean() > 0.9


def test_subject_is_deterministic_and_resumes(tmp_path, ict_model, tiny_subject):
    cfg = dict(TINY_GENERATOR, n_frames=4)
    root = tmp_path / "s"
    generate_subject(root, ict_model, **cfg)
    first = SubjectLayout(root).read_image("frames", 3).copy()
    # interrupted run: drop the last frame and mark incomplete -> a re-run finishes it identically
    (root / "frames" / "000003.png").unlink()
    meta = json.loads((root / "meta.json").read_text())
    meta["complete"] = False
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(LayoutError, match="incomplete"):
        SubjectLayout(root).validate()
    generate_subject(root, ict_model, **cfg)
    np.testing.assert_array_equal(SubjectLayout(root).read_image("frames", 3), first)
    # same seed, same pixels as the session subject's first frames
    np.testing.assert_array_equal(
        SubjectLayout(root).read_image("frames", 0), SubjectLayout(tiny_subject).read_image("frames", 0)
    )


def test_layout_errors(tmp_path):
    with pytest.raises(LayoutError, match="not a processed subject"):
        SubjectLayout(tmp_path).read_meta()
    (tmp_path / "meta.json").write_text("{broken")
    with pytest.raises(LayoutError, match="corrupt"):
        SubjectLayout(tmp_path).read_meta()
