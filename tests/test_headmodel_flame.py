"""FLAME head model on a small random FLAME-format file, checked against smplx.FLAME."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.headmodel.base import HeadModelError
from src.headmodel.flame import FLAMEHeadModel, load_pickle

V, F = 100, 150
B = 3
KINTREE = np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.uint32)


def _flame_dict(seed: int = 0, posedirs_flat: bool = False) -> dict:
    """Random arrays laid out like FLAME's generic_model.pkl (5 joints, 300+100 blendshapes)."""
    rng = np.random.default_rng(seed)
    faces = np.stack([rng.choice(V, 3, replace=False) for _ in range(F)]).astype(np.uint32)
    J = rng.random((5, V)) * (rng.random((5, V)) < 0.2)
    J /= J.sum(1, keepdims=True)
    posedirs = rng.normal(scale=0.01, size=(V, 3, 36))
    return {
        "v_template": rng.uniform(-0.1, 0.1, (V, 3)),
        "f": faces,
        "shapedirs": rng.normal(scale=1e-3, size=(V, 3, 400)),
        "posedirs": posedirs.reshape(V * 3, 36) if posedirs_flat else posedirs,
        "J_regressor": scipy.sparse.csc_matrix(J),
        "weights": rng.dirichlet(np.ones(5), V),
        "kintree_table": KINTREE,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def _embeddings(rng: np.random.Generator) -> tuple[dict, dict]:
    """(static 51-point embedding, DECA-style dict with full 68 = 17 contour + the 51 static)."""
    bary = rng.dirichlet(np.ones(3), 68).astype(np.float32)
    face_idx = rng.integers(0, F, 68)
    static = {"lmk_face_idx": face_idx[17:].astype(np.uint32), "lmk_b_coords": bary[17:].astype(np.float64)}
    full = {
        "static_lmk_faces_idx": face_idx[17:],
        "static_lmk_bary_coords": bary[17:],
        "dynamic_lmk_faces_idx": rng.integers(0, F, (79, 17)),
        "dynamic_lmk_bary_coords": rng.dirichlet(np.ones(3), (79, 17)),
        "full_lmk_faces_idx": face_idx[None],
        "full_lmk_bary_coords": bary[None],
    }
    return static, full


@pytest.fixture(scope="module")
def flame_dir(tmp_path_factory):
    """Folder with FLAME_NEUTRAL.pkl + the embeddings smplx.FLAME reads, and landmark_embedding.npy."""
    d = tmp_path_factory.mktemp("flame")
    with open(d / "FLAME_NEUTRAL.pkl", "wb") as fh:
        pickle.dump(_flame_dict(), fh, protocol=2)
    static, full = _embeddings(np.random.default_rng(1))
    with open(d / "flame_static_embedding.pkl", "wb") as fh:
        pickle.dump(static, fh, protocol=2)
    np.save(
        d / "flame_dynamic_embedding.npy",
        {"lmk_face_idx": full["dynamic_lmk_faces_idx"], "lmk_b_coords": full["dynamic_lmk_bary_coords"]},
    )
    np.save(d / "landmark_embedding.npy", full)
    return d


@pytest.fixture(scope="module")
def model(flame_dir):
    return FLAMEHeadModel(path=flame_dir / "FLAME_NEUTRAL.pkl")


def _params(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = torch.randn(B, 100, generator=g)
    expr = torch.randn(B, 50, generator=g)
    pose = 0.3 * torch.randn(B, 12, generator=g)
    return shape, expr, pose


def test_matches_smplx_flame(flame_dir, model):
    smplx = pytest.importorskip("smplx")
    ref = smplx.FLAME(str(flame_dir), num_betas=100, num_expression_coeffs=50, batch_size=B)
    shape, expr, pose = _params()
    kw = dict(neck_pose=pose[:, 0:3], jaw_pose=pose[:, 3:6], leye_pose=pose[:, 6:9], reye_pose=pose[:, 9:12])
    with torch.no_grad():
        out = ref(
            betas=shape, expression=expr, global_orient=torch.zeros(B, 3), transl=torch.zeros(B, 3), **kw
        )
        ours = model(shape, expr, joint_pose=pose)
    assert ours.shape == (B, V, 3) and model.n_joint_pose == 12
    assert (ours - out.vertices).abs().max() <= 1e-5
    # landmarks: full 68 = 17 contour + smplx's 51 static ones (appended after the 5 joints)
    lmk = model.landmarks(ours)
    assert lmk.shape == (B, 68, 3)
    assert (lmk[:, 17:] - out.joints[:, 5:]).abs().max() <= 1e-5

    # a rigid head rotation: smplx rotates about the root joint J0, ours about the origin
    rot = torch.tensor([[0.2, -0.4, 0.1], [0.0, 1.0, 0.0], [-0.5, 0.3, 0.2]])
    with torch.no_grad():
        out = ref(betas=shape, expression=expr, global_orient=rot, transl=torch.zeros(B, 3), **kw)
        ours = model(shape, expr, rotation=rot, joint_pose=pose)
    R = smplx.lbs.batch_rodrigues(rot)
    J0 = out.joints[:, :1]
    assert (ours + J0 - J0 @ R.transpose(1, 2) - out.vertices).abs().max() <= 1e-5


def test_zero_pose_is_blendshapes_only(model):
    shape, expr, _ = _params(1)
    verts = model(shape[:1], expr[:1])
    want = model.template + torch.einsum("k,vck->vc", shape[0], model.shapedirs)
    want = want + torch.einsum("k,vck->vc", expr[0], model.exprdirs)
    torch.testing.assert_close(verts[0], want, atol=1e-6, rtol=1e-5)
    # identity given once is shared by the batch
    torch.testing.assert_close(model(shape[0], expr)[0], model(shape[:1], expr[:1])[0])


def test_fake_chumpy_pickle_loads_without_chumpy(tmp_path, model, flame_dir):
    assert "chumpy" not in sys.modules
    chumpy, ch_mod = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x
            self._cache = {}
            self._dirty_vars = set()

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_mod.Ch, chumpy.ch, chumpy.Ch = Ch, ch_mod, Ch
    data = _flame_dict()
    for key in ("v_template", "shapedirs", "posedirs", "weights"):
        data[key] = Ch(data[key])
    sys.modules.update({"chumpy": chumpy, "chumpy.ch": ch_mod})
    try:
        with open(tmp_path / "generic_model.pkl", "wb") as fh:
            pickle.dump(data, fh, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    assert b"chumpy.ch" in (tmp_path / "generic_model.pkl").read_bytes()
    with pytest.raises(ModuleNotFoundError):
        pickle.load(open(tmp_path / "generic_model.pkl", "rb"), encoding="latin1")  # noqa: SIM115
    loaded = load_pickle(tmp_path / "generic_model.pkl")
    assert isinstance(loaded["shapedirs"], np.ndarray) and scipy.sparse.issparse(loaded["J_regressor"])
    m = FLAMEHeadModel(
        path=tmp_path / "generic_model.pkl", landmark_embedding=flame_dir / "landmark_embedding.npy"
    )
    shape, expr, pose = _params(2)
    torch.testing.assert_close(m(shape, expr, joint_pose=pose), model(shape, expr, joint_pose=pose))


def test_posedirs_flat_layout_and_dense_regressor(tmp_path, model, flame_dir):
    data = _flame_dict(posedirs_flat=True)
    data["J_regressor"] = data["J_regressor"].toarray()
    with open(tmp_path / "flame2023.pkl", "wb") as fh:
        pickle.dump(data, fh)
    m = FLAMEHeadModel(tmp_path / "flame2023.pkl", flame_dir / "landmark_embedding.npy")
    shape, expr, pose = _params(3)
    torch.testing.assert_close(m(shape, expr, joint_pose=pose), model(shape, expr, joint_pose=pose))


def test_regions_and_uvs(tmp_path, flame_dir):
    masks = {"face": np.arange(0, 60), "lips": np.arange(10, 20), "neck": np.arange(80, 90)}
    with open(tmp_path / "FLAME_masks.pkl", "wb") as fh:
        pickle.dump(masks, fh, protocol=2)
    faces = _flame_dict()["f"].astype(np.int64)
    lines = ["v 0 0 0"] * V + [f"vt {i / V} 0.5" for i in range(V + 5)]
    lines += [f"f {a + 1}/{a + 2} {b + 1}/{b + 2} {c + 1}/{c + 2}" for a, b, c in faces]
    (tmp_path / "head_template.obj").write_text("\n".join(lines) + "\n")
    m = FLAMEHeadModel(
        flame_dir / "FLAME_NEUTRAL.pkl",
        flame_dir / "landmark_embedding.npy",
        uv_path=tmp_path / "head_template.obj",
        masks_path=tmp_path / "FLAME_masks.pkl",
    )
    assert m.region_names == ["head", "face", "lips", "neck"]
    assert m.vertex_regions[:10].eq(1).all() and m.vertex_regions[10:20].eq(2).all()
    assert m.vertex_regions[60:80].eq(0).all() and m.vertex_regions[80:90].eq(3).all()
    assert m.face_regions.shape == (F,) and m.region_face_mask(["lips", "face"]).any()
    assert m.uvs.shape == (V + 5, 2) and torch.equal(m.face_uvs, m.faces + 1)

    plain = FLAMEHeadModel(flame_dir / "FLAME_NEUTRAL.pkl", flame_dir / "landmark_embedding.npy")
    assert plain.region_names == ["head"] and plain.face_regions.eq(0).all()
    assert plain.uvs.shape == (V, 2) and torch.equal(plain.face_uvs, plain.faces)


class _Evil:
    """Unpickling this would call a function: the loader must refuse it."""

    def __reduce__(self):
        import os

        return (os.getcwd, ())


def _write(tmp_path, data, name="bad.pkl"):
    with open(tmp_path / name, "wb") as fh:
        pickle.dump(data, fh, protocol=2)
    return tmp_path / name


def test_file_errors(tmp_path, flame_dir):
    lmk = flame_dir / "landmark_embedding.npy"
    with pytest.raises(HeadModelError, match="FLAME_MODEL_PATH"):
        FLAMEHeadModel(tmp_path / "missing.pkl", lmk)
    data = _flame_dict()
    del data["posedirs"], data["weights"]
    with pytest.raises(HeadModelError, match=r"lacks FLAME keys \['posedirs', 'weights'\]"):
        FLAMEHeadModel(_write(tmp_path, data), lmk)
    data = _flame_dict()
    data["weights"] = data["weights"][:, :4]
    with pytest.raises(HeadModelError, match="'weights' has shape"):
        FLAMEHeadModel(_write(tmp_path, data), lmk)
    data = _flame_dict()
    data["shapedirs"] = data["shapedirs"][..., :350]
    path = _write(tmp_path, data)
    with pytest.raises(HeadModelError, match="n_expression=60 but .* has 50 expression components"):
        FLAMEHeadModel(path, lmk, n_expression=60)
    assert FLAMEHeadModel(path, lmk, n_expression=50).n_expression == 50
    with pytest.raises(HeadModelError, match="n_shape=301"):
        FLAMEHeadModel(flame_dir / "FLAME_NEUTRAL.pkl", lmk, n_shape=301)
    with pytest.raises(
        HeadModelError, match="refusing to unpickle posix.getcwd|refusing to unpickle os.getcwd"
    ):
        FLAMEHeadModel(_write(tmp_path, {"v_template": _Evil()}), lmk)
    (tmp_path / "junk.pkl").write_bytes(b"\x00junk")
    with pytest.raises(HeadModelError, match="cannot unpickle"):
        FLAMEHeadModel(tmp_path / "junk.pkl", lmk)


def test_landmark_embedding_errors(tmp_path, flame_dir):
    model_path = flame_dir / "FLAME_NEUTRAL.pkl"
    # 51 static landmarks only -> a clear error naming the file that has 68
    with pytest.raises(HeadModelError, match="lmk_face_idx: 51.*landmark_embedding.npy.*full_lmk_faces_idx"):
        FLAMEHeadModel(model_path, flame_dir / "flame_static_embedding.pkl")
    with pytest.raises(HeadModelError, match="gives no 68-point embedding"):
        FLAMEHeadModel(model_path, flame_dir / "flame_dynamic_embedding.npy")
    with pytest.raises(HeadModelError, match="none of the landmark keys"):
        FLAMEHeadModel(model_path, _write(tmp_path, {}))
    with pytest.raises(HeadModelError, match="not found"):
        FLAMEHeadModel(model_path, "no_such_embedding.npy")
    # a 68-point static-style embedding is accepted too
    _, full = _embeddings(np.random.default_rng(1))
    emb = {"lmk_face_idx": full["full_lmk_faces_idx"][0], "lmk_b_coords": full["full_lmk_bary_coords"][0]}
    np.savez(tmp_path / "lmk68.npz", **emb)
    m = FLAMEHeadModel(model_path, tmp_path / "lmk68.npz")
    assert m.lmk_faces.tolist() == full["full_lmk_faces_idx"][0].tolist()


def test_bad_params(model):
    shape, expr, pose = _params()
    with pytest.raises(HeadModelError, match="joint_pose has 9"):
        model(shape, expr, joint_pose=pose[:, :9])
    with pytest.raises(HeadModelError, match="identity has 300"):
        model(torch.zeros(B, 300), expr)
    pose[0, 4] = float("nan")
    with pytest.raises(HeadModelError, match="NaN"):
        model(shape, expr, joint_pose=pose)
