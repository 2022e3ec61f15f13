"""Landmark tracking on the synthetic subject (ground-truth landmarks): accuracy, scoring, resume, FLAME."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.core.layout import SubjectLayout
from src.headmodel.rotation import axis_angle_to_matrix
from src.tracking import score_tracking, track_subject
from src.tracking.fitter import LandmarkModel, Tracker
from src.tracking.run import tracking_config
from src.tracking.score import _geodesic_deg
from src.utils.io import write_npz

FAST = {"steps_rigid": 100, "steps": 500, "focal": {"search_steps": [30, 120], "search_frames": 8},
        "overlay": {"enabled": False}}  # fmt: skip


@pytest.fixture(scope="module")
def tracked(tiny_subject, ict_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("track") / "tiny"
    shutil.copytree(tiny_subject, root)
    info = track_subject(root, ict_model, FAST)
    return root, info


def test_recovers_ground_truth_from_ground_truth_landmarks(tracked, ict_model):
    root, info = tracked
    s = score_tracking(root, ict_model)
    assert s["landmark_px"] < 1.0, s
    assert s["rotation_deg"] < 2.0, s
    assert s["vertex_face_aligned_mm"] < 3.0, s
    assert s["expression_mae"] < 0.05, s
    assert 15 < info["fov_deg"] < 35  # the subject was rendered at 24 degrees
    meta = SubjectLayout(root).read_meta()
    assert meta["available"]["tracking"] and meta["tracking"]["config"]["jaw_weight"] == 1.0
    assert info["timings"]["s_per_frame"] < 5


def test_tracking_npz_follows_the_layout(tracked, ict_model):
    root, _ = tracked
    p = SubjectLayout(root).read_params("tracking")
    n = 12
    assert p["expression"].shape == (n, ict_model.n_expression) and p["identity"].shape == (100,)
    assert p["rotation"].shape == (n, 3) and p["joint_pose"].shape == (n, 0)
    assert p["expression"].min() >= 0 and p["expression"].max() <= 1
    assert np.allclose(p["R"], np.diag([1, -1, -1])) and p["t"][2] > 0.2
    # K, R, t and the head pose reproduce the landmarks through the project's camera
    from src.render import Cameras

    verts = ict_model(torch.from_numpy(p["identity"])[None].expand(n, -1), torch.from_numpy(p["expression"]),
                      torch.from_numpy(p["rotation"]), torch.from_numpy(p["translation"]))  # fmt: skip
    cams = Cameras(torch.from_numpy(p["K"]), torch.from_numpy(p["R"]), torch.from_numpy(p["t"]), (48, 48))
    proj = cams.project(ict_model.landmarks(verts)).numpy()
    obs = np.load(root / "landmarks68.npy")
    assert np.linalg.norm(proj - obs, axis=-1).mean() < 0.3


def test_score_of_the_truth_is_zero(tiny_subject, ict_model, tmp_path):
    root = tmp_path / "gt"
    shutil.copytree(tiny_subject, root)
    shutil.copy(root / "ground_truth" / "params.npz", root / "tracking.npz")
    s = score_tracking(root, ict_model)
    assert s["rotation_deg"] < 1e-2 and s["vertex_mm"] < 1e-3 and s["landmark_px"] < 1e-3
    assert s["expression_mae"] == 0


@pytest.mark.integration
def test_cached_resumed_and_redone(tracked, ict_model, caplog):
    root, info = tracked
    again = track_subject(root, ict_model, FAST)
    assert again["config_hash"] == info["config_hash"]
    # an interrupted fit resumes after its last finished stage
    state = root / "work" / "tracking_state.npz"
    with np.load(state) as z:
        saved = {k: z[k] for k in z.files}
    write_npz(state, **{**saved, "stage": np.array(1)})
    with caplog.at_level(logging.INFO, logger="src.tracking.run"):
        meta = json.loads((root / "meta.json").read_text())
        meta["tracking"]["config_hash"] = "stale"
        (root / "meta.json").write_text(json.dumps(meta))
        resumed = track_subject(root, ict_model, FAST)
    assert "resuming tracking after stage 'rigid'" in caplog.text
    assert "focal_search_s" in resumed["timings"] and resumed["landmark_px"] < 1.0
    other = track_subject(root, ict_model, {**FAST, "steps": 50})
    assert other["config_hash"] != info["config_hash"]


def test_unknown_option_is_named():
    with pytest.raises(KeyError, match="unknown tracking option 'stpes'"):
        tracking_config({"stpes": 3})


def test_landmark_model_fast_path_matches_the_head_model(ict_model):
    lm = LandmarkModel(ict_model)
    g = torch.Generator().manual_seed(0)
    ident, expr = torch.randn(100, generator=g), torch.rand(3, ict_model.n_expression, generator=g)
    rot, trans = 0.3 * torch.randn(3, 3, generator=g), 0.01 * torch.randn(3, 3, generator=g)
    ref = ict_model.landmarks(ict_model(ident[None].expand(3, -1), expr, rot, trans))
    assert lm.linear and torch.allclose(lm(ident, expr, rot, trans), ref, atol=1e-6)


def test_generic_path_fits_a_flame_like_model(tmp_path):
    """FLAME (joints, unbounded expression) goes through the generic path (on a random FLAME-format file)."""
    import pickle

    from src.headmodel.flame import FLAMEHeadModel
    from tests.test_headmodel_flame import _embeddings, _flame_dict

    with open(tmp_path / "FLAME.pkl", "wb") as fh:
        pickle.dump(_flame_dict(), fh, protocol=2)
    np.save(tmp_path / "landmark_embedding.npy", _embeddings(np.random.default_rng(1))[1])
    hm = FLAMEHeadModel(path=tmp_path / "FLAME.pkl", landmark_embedding=tmp_path / "landmark_embedding.npy")
    lm = LandmarkModel(hm)
    assert not lm.linear
    n = 4
    g = torch.Generator().manual_seed(0)
    truth = {"expression": 0.5 * torch.randn(n, hm.n_expression, generator=g),
             "rotation": 0.1 * torch.randn(n, 3, generator=g), "translation": torch.zeros(n, 3)}  # fmt: skip
    with torch.no_grad():
        pts = lm(torch.zeros(hm.n_identity), truth["expression"], truth["rotation"], truth["translation"],
                 torch.zeros(n, hm.n_joint_pose))  # fmt: skip
        obs = 800 * pts[..., :2] / (0.5 - pts[..., 2:]) * torch.tensor([1.0, -1.0]) + 64
    cfg = {**tracking_config(FAST), "jaw_weight": 1.0, "noise_px": 0.5}
    tk = Tracker(hm, obs.numpy(), 128, cfg)
    tk.initialise()
    before = tk.residuals().mean().item()
    tk.run_stage("rigid", 10)
    tk.run_stage("full", 30)
    assert tk.joint_pose.shape == (n, hm.n_joint_pose) and not tk.bounded
    assert tk.residuals().mean().item() < 0.8 * before  # a smoke test: FLAME steps are slow on CPU


@pytest.mark.integration
def test_photometric_refinement_runs(tiny_subject, ict_model, tmp_path):
    root = tmp_path / "photo"
    shutil.copytree(tiny_subject, root)
    cfg = {
        **FAST,
        "steps": 100,
        "photometric": {"enabled": True, "texture_steps": 2, "steps": 2, "resolution": 24, "batch_frames": 2},
    }
    info = track_subject(root, ict_model, cfg)
    assert "photometric" in info["final_loss"] and info["timings"]["photometric_s"] > 0
    assert np.isfinite(info["landmark_px"])


def test_overlay_hidden_regions_come_from_the_caller_or_the_head_model(ict_model):
    from src.headmodel.regions import ICT_OVERLAY_REGIONS
    from src.tracking.overlay import hidden_regions

    default = hidden_regions(ict_model)  # the head model's own list: overlays and eyelash shells
    assert default == [r for r in ict_model.hidden_regions if r in ict_model.region_names]
    assert set(ICT_OVERLAY_REGIONS) & set(ict_model.region_names) <= set(default)
    assert hidden_regions(ict_model, ["face", "no_such_region"]) == ["face"]
    assert hidden_regions(ict_model, []) == []


def test_invisible_landmarks_count_nowhere(tiny_subject, ict_model):
    """Landmarks marked invisible (an occluder, a padded crop) are moved by 25 px: with their visibility
    the fit matches the clean fit on the rest; without it, they pull the fit away."""
    meta = json.loads((tiny_subject / "meta.json").read_text())
    obs = np.load(tiny_subject / "landmarks68.npy").astype(np.float32)
    size = int(meta["height"])
    cfg = {**tracking_config(FAST), "jaw_weight": 1.0, "noise_px": 0.5}
    cfg["focal"] = {**cfg["focal"], "fov_deg": float(meta.get("fov_deg", 24.0))}
    hidden = np.zeros(obs.shape[:2], bool)
    hidden[:, 48:60] = True  # the outer lips, as a hand over the mouth would cover them
    spoiled = obs.copy()
    spoiled[hidden] += 25.0 * size / 256

    def fit(observed, visible):
        tk = Tracker(ict_model, observed, size, cfg, None, visible)
        tk.initialise()
        tk.run_stage("rigid", 60)
        tk.run_stage("full", 200)
        with torch.no_grad():
            return (tk.landmarks2d().numpy() - obs)[~hidden]  # error on the points that stayed clean

    clean = np.abs(fit(obs, None)).mean()
    masked = np.abs(fit(spoiled, (~hidden).astype(np.float32))).mean()
    pulled = np.abs(fit(spoiled, None)).mean()
    assert masked < 1.5 * clean + 0.05 and pulled > masked + 0.1


def test_geodesic_angle_matches_the_axis_angle_norm():
    """The score's rotation error is the angle of the relative rotation, exact near zero too."""
    g = torch.Generator().manual_seed(0)
    axis = torch.nn.functional.normalize(torch.randn(40, 3, generator=g, dtype=torch.float64), dim=1)
    angle = torch.cat(
        [torch.rand(36, generator=g, dtype=torch.float64) * 3.1, torch.tensor([0, 1e-6, 1e-4, 1e-2])]
    )
    a = axis_angle_to_matrix(torch.randn(40, 3, generator=g, dtype=torch.float64)).numpy()
    rel = axis_angle_to_matrix(axis * angle[:, None]).numpy()
    np.testing.assert_allclose(_geodesic_deg(rel @ a, a), np.degrees(angle.numpy()), atol=1e-9)
