"""Cross-reenactment measurement: expression agreement against a plain loop, re-tracking recovers known
expressions, identity similarity separates people on real faces, and reenact.py mode=cross writes it."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from src.reenact.measure import (
    MOVING_STD,
    expression_agreement,
    landmark_agreement,
    measure_cross,
    retrack_expression,
    visible_coefficients,
)
from src.render import Cameras, intrinsics_from_fov
from src.tracking.fitter import LandmarkModel
from src.utils.confdir import CONFIG_DIR
from tests.avatar_ckpt import tiny_avatar_checkpoint
from tests.helpers import clip_faces, compose_train

pytestmark = pytest.mark.integration  # reenacts and re-tracks a trained checkpoint

CAM_R = torch.diag(torch.tensor([1.0, -1.0, -1.0]))  # a camera at (0,0,0.7) looking along -z at the face


def test_expression_agreement_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    driver = rng.random((30, 6)) * np.array([0.5, 0.3, 0.001, 0.2, 0.0, 0.4])  # two coefficients still
    retracked = 0.7 * driver + 0.05 * rng.standard_normal((30, 6))
    got = expression_agreement(driver, retracked)
    moved = [k for k in range(6) if driver[:, k].std() >= MOVING_STD]
    corr = [np.corrcoef(driver[:, k], retracked[:, k])[0, 1] for k in moved]
    mae = np.mean([abs((driver[i, k] - driver[:, k].mean()) - (retracked[i, k] - retracked[:, k].mean()))
                   for i in range(30) for k in moved])  # fmt: skip
    still = np.mean([abs(driver[i, k] - driver[:, k].mean()) for i in range(30) for k in moved])
    assert got["moved"] == len(moved) == 4
    assert got["expression_corr"] == pytest.approx(np.mean(corr), abs=1e-9)
    assert got["expression_change_mae"] == pytest.approx(mae, abs=1e-9)
    assert got["still_face_change_mae"] == pytest.approx(still, abs=1e-9)
    part = expression_agreement(driver, retracked, np.array([True, False, True, True, True, True]))
    assert part["moved"] == 3  # the coefficients a landmark fit cannot see are left out
    noise = expression_agreement(driver, rng.random((30, 6)))
    assert noise["expression_corr"] < 0.5 < got["expression_corr"]


def test_retrack_recovers_rendered_expressions(ict_model):
    """Landmarks projected from known expressions (+0.5 px noise) are re-tracked to those expressions."""
    torch.manual_seed(0)
    hm, n, size = ict_model, 12, 256
    names = list(hm.expression_names)
    expr = torch.zeros(n, hm.n_expression)
    for name, amp in (("jawOpen", 0.6), ("mouthSmile_L", 0.7), ("mouthSmile_R", 0.7), ("eyeBlink_L", 0.8)):
        expr[:, names.index(name)] = amp * torch.rand(n)
    identity = 0.5 * torch.randn(hm.n_identity)
    rot, trans = 0.1 * torch.randn(n, 3), torch.zeros(n, 3)
    K = intrinsics_from_fov(24.0, size, size)
    cams = Cameras(
        K.expand(n, 3, 3), CAM_R.expand(n, 3, 3), torch.tensor([0.0, 0.0, 0.7]).expand(n, 3), (size, size)
    )
    with torch.no_grad():
        lm = cams.project(LandmarkModel(hm)(identity, expr, rot, trans)) + 0.5 * torch.randn(n, 68, 2)
    tracking = OmegaConf.to_container(OmegaConf.load(f"{CONFIG_DIR}/tracking/default.yaml"))
    got = retrack_expression(hm, identity, lm.numpy(), cams, rot + 0.02, trans, tracking, steps=300)
    visible = visible_coefficients(hm, identity, expr)
    assert visible[names.index("jawOpen")] and visible.sum() == 4  # the four that move, all visible
    res = expression_agreement(expr.numpy(), got.numpy(), visible)
    assert res["moved"] == 4
    assert res["expression_corr"] > 0.9
    assert res["expression_change_mae"] < 0.5 * res["still_face_change_mae"]
    mm = landmark_agreement(hm, identity, expr, got)
    assert mm["landmark_change_error_mm"] < 0.3 * mm["still_face_landmark_change_mm"]
    assert landmark_agreement(hm, identity, expr, expr)["landmark_change_error_mm"] < 1e-6


def test_identity_similarity_separates_people_on_real_faces():
    """The person of the real clip against herself (other frames) and against skimage's astronaut."""
    from skimage import data

    faces = clip_faces([0, 20, 40, 60, 10, 30], extra=[data.astronaut()])
    stack = [
        (np.stack([f[0] for f in part]), np.stack([f[1] for f in part])) for part in (faces[:4], faces[4:6])
    ]
    astronaut = (faces[6][0][None], faces[6][1][None])
    res = measure_cross(stack[1][0], stack[0], astronaut, np.zeros((2, 3)), None)
    assert res["frames_without_face"] == 0
    assert res["csim_avatar"] > 0.9  # the same person (dlib: distance < 0.6 means cos > 0.82)
    assert res["csim_driver"] < 0.82 and res["csim_avatar_driver"] < 0.82
    assert res["csim_avatar"] - res["csim_driver"] > 0.1


@pytest.fixture(scope="module")
def avatar_ckpt(tiny_subject, tmp_path_factory):
    return tiny_avatar_checkpoint(tiny_subject, tmp_path_factory.getbasetemp())


def test_reenact_cross_writes_measurements(avatar_ckpt, tiny_subject, tmp_path):
    """The tiny avatar driven by its own subject's frames (48 px, one epoch of training: faces too small and
    blurred to detect, so no CSIM) still writes the file and says how many frames had no face."""
    from src.cli.reenact import run

    source_subject = tiny_subject
    out = tmp_path / "out"
    cfg = compose_train(
        [f"ckpt_path={avatar_ckpt}", "mode=cross", f"source={source_subject}", f"out_dir={out}",
         "progress=false", "fps=10", "source_frames=0:3", "measure.retrack_steps=5"],
        output_dir=out, config_name="reenact",
    )  # fmt: skip
    info = run(cfg)
    res = json.loads((out / "cross_metrics.json").read_text())
    assert info["cross_metrics"].endswith("cross_metrics.json")
    assert res["frames"] == 3 and 0 <= res["frames_without_face"] <= 3
    assert "descriptor" in res and res["driver_frames"] == 3 and res["avatar_frames"] > 0
