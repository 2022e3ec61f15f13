"""Dense tracking: FaceMesh's 478 points embedded on ICT (lookup, fit, calibration command, config)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.headmodel.base import HeadModelError
from src.headmodel.dense import ICT_EMBEDDING, has_dense, load_embedding
from src.headmodel.rotation import axis_angle_to_matrix
from src.tracking.fitter import LandmarkModel, Tracker, fit_cameras
from src.tracking.run import resolve_auto, tracking_config, tracking_hash

FAST = {"steps_rigid": 150, "steps": 600, "overlay": {"enabled": False}, "focal": {"mode": "fixed"}}


def test_packaged_embedding_loads_and_fits_ict(ict_model):
    assert ICT_EMBEDDING.exists() and has_dense(ict_model) and ict_model.has_dense
    emb = load_embedding(ICT_EMBEDDING, ict_model.faces, int(ict_model.template.shape[0]))
    assert emb.faces.shape == (478,) and emb.bary.shape == (478, 3) and emb.weights.shape == (478,)
    assert np.allclose(emb.bary.sum(1), 1, atol=1e-5) and (emb.bary >= -1e-6).all()
    assert (emb.weights > 0).all() and (emb.weights <= 1).all()
    eyes = ict_model.region_face_mask(["eyeball_left", "eyeball_right"]).numpy()
    assert eyes[emb.faces[468:]].all(), "iris points must sit on the eyeballs"
    assert emb.settings["seed"] != 0  # calibrated on another subject than the bench's seed-0 one
    with pytest.raises(HeadModelError, match="another mesh"):
        load_embedding(ICT_EMBEDDING, ict_model.faces[:-1])


def test_vectorised_lookup_matches_a_loop(ict_model):
    g = torch.Generator().manual_seed(0)
    verts = ict_model.template[None] + 0.01 * torch.randn(2, *ict_model.template.shape, generator=g)
    fast = ict_model.landmarks478(verts)
    slow = torch.zeros(2, 478, 3)
    for b in range(2):
        for p in range(478):
            tri = ict_model.faces[ict_model.dense_faces[p]]
            for k in range(3):
                slow[b, p] += ict_model.dense_bary[p, k] * verts[b, tri[k]]
    assert fast.shape == (2, 478, 3)
    assert torch.allclose(fast, slow, atol=1e-6)
    # the linear fast path of the fitter precomputes the same rows
    lm = LandmarkModel(ict_model, dense=True)
    assert lm.linear and lm.tmpl.shape == (478, 3) and lm.exb.shape == (ict_model.n_expression, 478, 3)
    e = torch.rand(3, ict_model.n_expression, generator=g) * 0.3
    i = 0.5 * torch.randn(ict_model.n_identity, generator=g)
    ref = ict_model.landmarks478(ict_model.canonical(i[None].expand(3, -1), e))
    # with turned eyes the fitter keeps lid-margin points calibrated onto an eyeball's rim with the lids,
    # so the two agree everywhere but there (the irises: test_headmodel_gaze.py)
    rim = (ict_model.point_eyes(ict_model.dense_faces) >= 0) & (torch.arange(478) < 468)
    assert rim.sum() < 12
    assert torch.allclose(lm.canonical(i, e)[:, ~rim], ref[:, ~rim], atol=1e-6)
    still = e.clone()
    still[:, [i for i, n in enumerate(ict_model.expression_names) if n.startswith("eyeLook")]] = 0
    ref = ict_model.landmarks478(ict_model.canonical(i[None].expand(3, -1), still))
    assert torch.allclose(lm.canonical(i, still), ref, atol=1e-6)


def _truth(hm, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Sparse expressions in [0,1] and head turns up to ~30 degrees (ICT)."""
    g = torch.Generator().manual_seed(seed)
    e = torch.zeros(n, hm.n_expression)
    for name, peak in (("jawOpen", 0.6), ("mouthSmile_L", 0.7), ("eyeBlink_R", 0.8), ("browInnerUp_L", 0.6),
                       ("mouthPucker", 0.5), ("browDown_R", 0.5)):  # fmt: skip
        e[:, hm.expression_index(name)] = peak * torch.rand(n, generator=g)
    t = torch.linspace(0, 1, n)
    rot = torch.stack([0.15 * torch.sin(6 * t), 0.5 * torch.sin(4 * t), 0.05 * torch.cos(5 * t)], -1)
    return {"identity": 0.6 * torch.randn(hm.n_identity, generator=g), "expression": e, "rotation": rot,
            "translation": 0.005 * torch.randn(n, 3, generator=g)}  # fmt: skip


def test_dense_ground_truth_points_recover_pose_and_expression(ict_model):
    n, size, fov = 10, 256, 26.0
    truth = _truth(ict_model, n)
    focal = 0.5 * size / math.tan(math.radians(fov) / 2)
    with torch.no_grad():
        pts = LandmarkModel(ict_model, dense=True)(
            truth["identity"], truth["expression"], truth["rotation"], truth["translation"]
        )
        obs = fit_cameras(focal, 0.7, size).project(pts).numpy()
    cfg = {**tracking_config(FAST), "landmarks": "dense", "jaw_weight": 1.0, "noise_px": 0.5}
    cfg["focal"] = {**cfg["focal"], "fov_deg": fov}
    # independent random frames: no temporal smoothness
    cfg["weights"] = {
        **cfg["weights"],
        "smooth_rotation": 0.0,
        "smooth_translation": 0.0,
        "smooth_expression": 0.0,
    }
    tk = Tracker(ict_model, obs, size, cfg)
    tk.initialise()
    tk.run_stage("rigid", cfg["steps_rigid"])
    tk.run_stage("full", cfg["steps"])
    rel = axis_angle_to_matrix(tk.rotation.detach()) @ axis_angle_to_matrix(truth["rotation"]).transpose(1, 2)
    ang = torch.rad2deg(torch.arccos(((rel.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)))
    mae = (tk.expression.detach() - truth["expression"]).abs().mean().item()
    zero = truth["expression"].abs().mean().item()
    assert tk.residuals().mean().item() < 0.5
    assert ang.mean().item() < 1.0, ang
    assert mae < 0.35 * zero, (mae, zero)


def test_iris_points_ride_on_the_eyeballs(ict_model):
    """ICT-FaceKit Light's eyeLook* blendshapes move the eyelids, not the eyeballs: the blendshapes alone
    leave the iris points still, which is why the head model carries a gaze rig (test_headmodel_gaze.py)."""
    emb_faces = ict_model.faces[ict_model.dense_faces[468:]].flatten()
    eyeball = torch.isin(
        ict_model.vertex_regions[emb_faces],
        torch.tensor([ict_model.region_names.index(r) for r in ("eyeball_left", "eyeball_right")]),
    )
    assert eyeball.all()
    look = [ict_model.expression_index(n) for n in ict_model.expression_names if n.startswith("eyeLook")]
    moved = ict_model.landmarks478(ict_model.expression_basis[look])[:, 468:].norm(dim=-1)
    assert len(look) == 8 and moved.max() < 1e-6


def test_tracker_rejects_the_wrong_point_count(ict_model):
    cfg = {**tracking_config(FAST), "landmarks": "dense", "jaw_weight": 1.0, "noise_px": 0.5}
    with pytest.raises(ValueError, match="needs \\(N,478,2\\)"):
        Tracker(ict_model, np.zeros((2, 68, 2), np.float32), 64, cfg)


def test_landmark_choice_and_cache_key(ict_model, tmp_path):
    assert str(tracking_config({})["landmarks"]) == "68"  # the default until dense beats 68 on the bench
    cfg = tracking_config({"landmarks": "auto"})
    assert resolve_auto(cfg, {}, dense_available=True)["landmarks"] == "dense"
    assert resolve_auto(cfg, {}, dense_available=False)["landmarks"] == "68"
    assert resolve_auto({**cfg, "landmarks": "68"}, {}, dense_available=True)["landmarks"] == "68"
    with pytest.raises(ValueError, match="landmarks=dense needs landmarks478"):
        resolve_auto({**cfg, "landmarks": "dense"}, {}, dense_available=False)
    with pytest.raises(ValueError, match="use one of"):
        resolve_auto({**cfg, "landmarks": "106"}, {}, dense_available=True)
    lmk = tmp_path / "l.npy"
    np.save(lmk, np.zeros((2, 68, 2), np.float32))
    h68 = tracking_hash(resolve_auto(cfg, {}, False), ict_model, lmk)
    hd = tracking_hash(resolve_auto(cfg, {}, True), ict_model, lmk)
    assert h68 != hd


def test_auto_tracks_a_subject_with_facemesh_points_densely(tiny_subject, ict_model, tmp_path):
    import shutil

    from src.core.layout import SubjectLayout
    from src.render import Cameras
    from src.tracking import track_subject

    root = tmp_path / "tiny"
    shutil.copytree(tiny_subject, root)
    layout = SubjectLayout(root)
    gt, meta = layout.read_params("ground_truth"), layout.read_meta()
    size = int(meta["height"])
    cams = Cameras(*(torch.from_numpy(gt[k])[None] for k in ("K", "R", "t")), (size, size))
    verts = torch.from_numpy(np.asarray(layout.read_gt_vertices()))
    np.save(layout.landmarks478_path, cams.project(ict_model.landmarks478(verts)).numpy())
    fast = {**FAST, "steps_rigid": 50, "steps": 150, "landmarks": "auto"}
    info = track_subject(root, ict_model, fast)
    assert info["landmarks"] == "dense" and info["config"]["landmarks"] == "dense"
    assert info["landmark_px"] < 2.0
    info68 = track_subject(root, ict_model, {**fast, "landmarks": "68"})
    assert info68["landmarks"] == "68" and info68["config_hash"] != info["config_hash"]


@pytest.mark.integration
def test_calibration_command_writes_a_loadable_embedding(tmp_path, ict_model):
    from src.tracking.calibrate_dense import main

    out = main(["--frames", "4", "--resolution", "192", "--seed", "2", "--work", str(tmp_path / "w"),
                "--out", str(tmp_path / "emb.npz")])  # fmt: skip
    emb = load_embedding(Path(out), ict_model.faces, int(ict_model.template.shape[0]))
    assert emb.faces.shape == (478,) and np.isfinite(emb.spread_px).all()
    assert emb.settings["n_frames"] == 4 and emb.settings["seed"] == 2
