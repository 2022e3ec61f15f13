"""Eye gaze: ICT's eyeLook weights turn the eyeballs (src/headmodel/gaze.py), and dense tracking recovers
them from FaceMesh's iris points."""

from __future__ import annotations

import math

import numpy as np
import torch

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.datamodules.synthetic.trajectory import make_trajectory
from src.headmodel.gaze import sphere_centre
from src.tracking.fitter import LandmarkModel, Tracker, fit_cameras
from src.tracking.run import tracking_config


def _look(hm, **weights: float) -> torch.Tensor:
    return hm.expression_vector(weights)[None]


def test_eyelook_turns_the_eyeball_about_its_centre(ict_model):
    hm, rig = ict_model, ict_model.gaze
    assert rig is not None
    ident = torch.zeros(1, hm.n_identity)
    rest = hm.canonical(ident, _look(hm))
    left, right = rig.vertex_eye == 0, rig.vertex_eye == 1
    centre = rig.centres(ident)[0]
    assert torch.allclose(centre[0], sphere_centre(rest[0, left]), atol=1e-6)
    out = hm.canonical(ident, _look(hm, eyeLookOut_L=1.0))
    moved = (out - rest)[0].norm(dim=-1)
    assert moved[left].max() > 5e-3 and moved[right].max() == 0  # only the left eyeball turns
    # the lids follow the blendshape: everything off the eyeballs is the plain blendshape sum
    plain = rest[0] + hm.expression_basis[hm.expression_index("eyeLookOut_L")]
    off = ~(left | right)
    assert torch.allclose(out[0, off], plain[off], atol=1e-7)
    dist = lambda v: (v[0, left] - centre[0]).norm(dim=-1)  # noqa: E731
    assert torch.allclose(dist(out), dist(rest), atol=1e-7)  # a rotation about the centre
    front = rest[0, left][:, 2].argmax()
    shift = out[0, left][front] - rest[0, left][front]
    assert shift[0] > 5e-3 and shift[1].abs() < 1e-6  # the left eye looks out: towards +x
    d = rig.directions(_look(hm, eyeLookOut_R=1.0, eyeLookUp_L=1.0))[0]
    assert d[1, 0] < 0 and math.isclose(float(-d[1, 0]), math.sin(math.radians(35)), rel_tol=1e-5)
    assert math.isclose(float(d[0, 1]), math.sin(math.radians(25)), rel_tol=1e-5)  # up: +y


def test_vectorised_gaze_matches_a_loop(ict_model):
    hm, rig = ict_model, ict_model.gaze
    g = torch.Generator().manual_seed(0)
    e = torch.rand(3, hm.n_expression, generator=g) * 0.5
    ident = 0.5 * torch.randn(3, hm.n_identity, generator=g)
    pts = hm.template[None] + 0.001 * torch.randn(3, *hm.template.shape, generator=g)
    fast = rig.apply(pts, rig.vertex_eye, ident, e)
    names = hm.expression_names
    slow = pts.clone()
    for b in range(3):
        for k, (suffix, sign) in enumerate((("_L", 1.0), ("_R", -1.0))):
            w = {n: float(e[b, names.index(n + suffix)]) for n in ("eyeLookIn", "eyeLookOut", "eyeLookUp",
                                                                  "eyeLookDown")}  # fmt: skip
            yaw = math.radians(35) * (w["eyeLookOut"] - w["eyeLookIn"]) * sign
            pitch = math.radians(25) * (w["eyeLookUp"] - w["eyeLookDown"])
            ry = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
            rx = np.array([[1, 0, 0], [0, math.cos(pitch), math.sin(pitch)],
                           [0, -math.sin(pitch), math.cos(pitch)]])  # fmt: skip
            R = torch.tensor(ry @ rx, dtype=torch.float32)
            c = rig.centres(ident[b : b + 1])[0, k]
            for v in torch.nonzero(rig.vertex_eye == k).squeeze(1).tolist():
                slow[b, v] = R @ (pts[b, v] - c) + c
    assert torch.allclose(fast, slow, atol=1e-6)


def test_gaze_off_keeps_the_eyeballs_still(ict_model):
    from src.headmodel.ict import ICTHeadModel

    still = ICTHeadModel(gaze_deg=None, dense=False)
    e = _look(ict_model, eyeLookOut_L=1.0, eyeLookUp_R=0.5)
    ident = torch.zeros(1, still.n_identity)
    rest = still.canonical(ident, e * 0)
    eyes = ict_model.gaze.vertex_eye >= 0
    assert still.gaze is None and torch.equal(still.canonical(ident, e)[0, eyes], rest[0, eyes])
    assert (ict_model.canonical(ident, e)[0, eyes] - rest[0, eyes]).abs().max() > 1e-3


def test_iris_points_follow_the_gaze_in_the_fitter(ict_model):
    lm = LandmarkModel(ict_model, dense=True)
    assert lm.gaze is not None and (lm.point_eye >= 0).nonzero().squeeze(1).tolist() == list(range(468, 478))
    e = _look(ict_model, eyeLookIn_L=0.7, eyeLookDown_R=0.4).expand(2, -1)
    i = 0.3 * torch.ones(ict_model.n_identity)
    ref = ict_model.landmarks478(ict_model.canonical(i[None].expand(2, -1), e))
    fast = lm.canonical(i, e)
    assert torch.allclose(fast[:, 468:], ref[:, 468:], atol=1e-6)  # the linear fast path turns the irises
    assert (fast[:, 468:] - lm.canonical(i, e * 0)[:, 468:]).norm(dim=-1).min() > 1e-3


def test_dense_points_recover_gaze(ict_model):
    """Ground-truth 478 points of wandering eyes: the fit's look directions beat looking ahead by 2x."""
    hm, n, size, fov = ict_model, 24, 256, 26.0
    traj = make_trajectory(hm.expression_names, n, seed=3, gaze=0.8)
    expr = torch.from_numpy(traj["expression"])
    rot = torch.from_numpy(np.stack([traj["pitch"], traj["yaw"], traj["roll"]], -1)) * 0.5
    lm = LandmarkModel(hm, dense=True)
    with torch.no_grad():
        pts = lm(torch.zeros(hm.n_identity), expr, rot, torch.from_numpy(traj["translation"]))
        obs = fit_cameras(0.5 * size / math.tan(math.radians(fov) / 2), 0.7, size).project(pts).numpy()
    cfg = {**tracking_config({"steps_rigid": 150, "steps": 600, "focal": {"mode": "fixed", "fov_deg": fov}}),
           "landmarks": "dense", "jaw_weight": 1.0, "noise_px": 0.5}  # fmt: skip
    tk = Tracker(hm, obs, size, cfg)
    tk.initialise()
    tk.run_stage("rigid", cfg["steps_rigid"])
    tk.run_stage("full", cfg["steps"])
    d_fit, d_true = hm.gaze.directions(tk.expression.detach()), hm.gaze.directions(expr)
    err = torch.rad2deg(torch.acos((d_fit * d_true).sum(-1).clamp(-1, 1))).mean()
    ahead = torch.rad2deg(torch.acos(d_true[..., 2].clamp(-1, 1))).mean()
    assert ahead > 5 and err < 0.5 * ahead, (float(err), float(ahead))


def test_gaze_presets_turn_both_eyes_together(ict_model):
    from pathlib import Path

    from omegaconf import OmegaConf

    from src.reenact.presets import preset_vectors

    path = Path(__file__).resolve().parents[1] / "conf" / "presets" / "ict.yaml"
    vectors = preset_vectors(OmegaConf.to_container(OmegaConf.load(path)), ict_model)
    glance = ict_model.gaze.directions(vectors["glance"][None])[0]
    roll = ict_model.gaze.directions(vectors["eye_roll"][None])[0]
    assert torch.allclose(glance[0], glance[1]) and glance[0, 0] > 0.3  # conjugate, towards +x
    assert torch.allclose(roll[0], roll[1]) and roll[0, 1] > 0.3  # both up
    assert ict_model.gaze.directions(vectors["smile"][None])[0, :, 2].min() == 1  # others look ahead
