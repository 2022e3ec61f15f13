"""ICT-FaceKit head model and the OBJ -> npz converter (uses shared/assets/ict_facekit)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)
from src.headmodel.base import HeadModelError
from src.headmodel.ict import ICTHeadModel, triangulate
from src.headmodel.ict_convert import main as convert_main
from src.utils.assets import PROJECT_ROOT, AssetNotFoundError, find_asset

try:
    NPZ_PATH = find_asset("ict_facekit/ict_facekit_light.npz")
except AssetNotFoundError:
    pytest.skip("ICT-FaceKit asset not available (set AVATAR_ASSETS)", allow_module_level=True)
RAW = NPZ_PATH.parent / "raw"
V, F_QUAD = 26719, 26384


@pytest.fixture(scope="module")
def ref():
    """The shipped npz, loaded once (arrays read on first access)."""
    with np.load(NPZ_PATH) as npz:
        yield {k: npz[k] for k in ("template", "faces", "face_uvs", "face_material", "landmarks68")} | {
            "npz": npz
        }


@pytest.fixture(scope="module")
def model():
    return ICTHeadModel()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("ict") / "partial.npz"
    assert convert_main(["--src", str(RAW), "--out", str(out), "--allow-partial"]) == 0
    with np.load(out) as npz:
        yield {k: npz[k] for k in npz.files}


# ---------------------------------------------------------------- converter


def test_convert_matches_shipped_npz(converted, ref):
    npz = ref["npz"]
    for key in ("template", "uvs"):
        np.testing.assert_allclose(converted[key], npz[key], rtol=1e-6, atol=1e-6, err_msg=key)
        assert converted[key].dtype == np.float32
    for key in ("faces", "face_uvs", "face_material", "material_names", "region_names"):
        np.testing.assert_array_equal(converted[key], npz[key], err_msg=key)
        assert converted[key].dtype.kind == npz[key].dtype.kind
    assert converted["face_material"].dtype == np.int16 and converted["faces"].dtype == np.int32
    assert list(converted["identity_names"]) == ["identity000"]
    np.testing.assert_allclose(converted["identity_basis"][0], npz["identity_basis"][0], rtol=1e-6, atol=1e-6)
    assert list(converted["expression_names"]) == ["jawOpen", "mouthSmile_L"]
    names = list(npz["expression_names"])
    for i, name in enumerate(converted["expression_names"]):
        ref_row = npz["expression_basis"][names.index(name)]
        np.testing.assert_allclose(converted["expression_basis"][i], ref_row, rtol=1e-6, atol=1e-6)


def test_convert_index_fields_from_json(converted, ref):
    npz = ref["npz"]
    index = json.loads((RAW / "vertex_indices.json").read_text())
    for key in ("landmarks68", "rigid_landmarks", "rigid_vertices", "fitting_vertices"):
        np.testing.assert_array_equal(converted[key], npz[key], err_msg=key)
        assert converted[key].dtype == np.int32
    np.testing.assert_array_equal(converted["landmarks68"], index["idx_to_landmark_verts"])
    assert list(npz["expression_names"]) == index["expressions"]
    for key in ("region_vertex_ranges", "region_face_ranges"):
        np.testing.assert_array_equal(converted[key], npz[key], err_msg=key)
    assert set(converted) == set(npz.files)


def test_convert_missing_files_is_one_line_error(tmp_path):
    out = tmp_path / "x.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "src.headmodel.ict_convert", "--src", str(RAW), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1
    assert "150 OBJ file(s) missing" in err and "identity001..099.obj" in err and "--allow-partial" in err
    assert "browDown_L.obj" in err and "noseSneer_R.obj" in err and "jawOpen.obj" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_convert_missing_folder(tmp_path, capsys):
    assert convert_main(["--src", str(tmp_path / "nope"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "generic_neutral_mesh.obj" in capsys.readouterr().err


# ---------------------------------------------------------------- model


def test_shapes_and_buffers(model, ref):
    n_quads = int((ref["faces"][:, 3] >= 0).sum())
    F = F_QUAD + n_quads
    assert model.template.shape == (V, 3)
    assert model.faces.shape == (F, 3) and model.faces.dtype == torch.long
    assert model.face_uvs.shape == (F, 3) and model.face_uvs.dtype == torch.long
    assert model.face_regions.shape == (F,) and model.face_material.shape == (F,)
    assert model.vertex_regions.shape == (V,)
    assert model.identity_basis.shape == (100, V, 3) and model.expression_basis.shape == (53, V, 3)
    assert model.lmk_faces.shape == (68,) and model.lmk_bary.shape == (68, 3)
    assert model.rigid_landmarks.shape == (9,)
    assert (model.n_identity, model.n_expression, model.n_joint_pose) == (100, 53, 0)
    assert len(model.expression_names) == 53 and len(model.region_names) == 17
    assert model.uvs.shape[1] == 2 and int(model.face_uvs.max()) < model.uvs.shape[0]
    assert model.region_face_mask(["teeth"]).sum() > 0
    assert model.state_dict() == {}  # file-derived buffers are not checkpointed


def test_triangulation_covers_every_quad(model, ref):
    quads = ref["faces"]
    tris, origin = triangulate(quads)
    np.testing.assert_array_equal(tris, model.faces.numpy())
    is_quad = quads[:, 3] >= 0
    assert np.array_equal(np.bincount(origin, minlength=len(quads)), 1 + is_quad)
    first = np.searchsorted(origin, np.arange(len(quads)))
    np.testing.assert_array_equal(tris[first], quads[:, :3])
    q = np.nonzero(is_quad)[0]
    np.testing.assert_array_equal(tris[first[q] + 1], quads[q][:, [0, 2, 3]])
    np.testing.assert_array_equal(model.face_material.numpy(), ref["face_material"][origin])
    uv_tris, _ = triangulate(ref["face_uvs"])
    np.testing.assert_array_equal(uv_tris, model.face_uvs.numpy())
    # the mouth socket region starts at original face 11144
    assert model.region_names[int(model.face_regions[first[11144]])] == "mouth_socket"


def test_zero_coefficients_give_scaled_template(model, ref):
    verts = model(torch.zeros(100), torch.zeros(2, 53))
    assert verts.shape == (2, V, 3)
    np.testing.assert_allclose(verts[1].numpy(), ref["template"] * 0.01, rtol=1e-6, atol=1e-7)


def test_single_expression_adds_blendshape(model, ref):
    k = model.expression_index("jawOpen")
    expr = model.expression_vector({"jawOpen": 1.0})
    assert expr.shape == (53,) and expr[k] == 1 and expr.sum() == 1
    verts = model(torch.zeros(1, 100), expr[None])
    want = (ref["template"] + ref["npz"]["expression_basis"][k]) * 0.01
    np.testing.assert_allclose(verts[0].numpy(), want, rtol=1e-5, atol=1e-7)


def test_landmarks_are_listed_vertices(model, ref):
    torch.manual_seed(0)
    verts = model(torch.randn(2, 100), torch.rand(2, 53))
    lmk = model.landmarks(verts)
    assert lmk.shape == (2, 68, 3)
    torch.testing.assert_close(lmk, verts[:, torch.from_numpy(ref["landmarks68"]).long()], rtol=0, atol=0)


def test_rigid_pose_applied(model):
    ident, expr = torch.zeros(1, 100), torch.zeros(1, 53)
    base = model(ident, expr)
    rot = model(ident, expr, rotation=torch.tensor([[0.0, math.pi / 2, 0.0]]), translation=torch.zeros(1, 3))
    torch.testing.assert_close(rot[..., 0], base[..., 2], atol=1e-6, rtol=0)  # +z -> +x
    torch.testing.assert_close(rot[..., 2], -base[..., 0], atol=1e-6, rtol=0)
    torch.testing.assert_close(rot[..., 1], base[..., 1], atol=1e-6, rtol=0)
    moved = model(ident, expr, translation=torch.tensor([[0.0, 0.0, 0.5]]))
    torch.testing.assert_close(moved - base, torch.tensor([0.0, 0.0, 0.5]).expand_as(base))


def test_bad_params_raise(model):
    with pytest.raises(HeadModelError, match="identity has 99"):
        model(torch.zeros(1, 99), torch.zeros(1, 53))
    with pytest.raises(HeadModelError, match="expression"):
        model(torch.zeros(1, 100), torch.zeros(1, 52))
    bad = torch.zeros(1, 53)
    bad[0, 3] = float("nan")
    with pytest.raises(HeadModelError, match="NaN"):
        model(torch.zeros(1, 100), bad)
    with pytest.raises(HeadModelError, match="unknown ICT expression 'jawopen'.*jawOpen"):
        model.expression_vector({"jawopen": 1.0})


def test_fewer_identity_modes(model):
    small = ICTHeadModel(n_identity=10, n_expression=5)
    assert small.identity_basis.shape[0] == 10 and small.expression_names == model.expression_names[:5]
    torch.testing.assert_close(small.identity_basis, model.identity_basis[:10])
    assert small(torch.zeros(1, 10), torch.zeros(1, 5)).shape == (1, V, 3)
    with pytest.raises(HeadModelError, match="n_identity=101"):
        ICTHeadModel(n_identity=101)


def test_missing_file(tmp_path):
    with pytest.raises(HeadModelError, match="ICT-FaceKit.*AVATAR_ASSETS"):
        ICTHeadModel(path=tmp_path / "missing.npz")


def _tiny_ict(**over) -> dict:
    """A 6-vertex stand-in with the npz layout (one quad, two triangles)."""
    arrays = {
        "template": np.random.rand(6, 3).astype(np.float32),
        "faces": np.array([[0, 1, 2, 3], [2, 4, 3, -1], [3, 4, 5, -1]], dtype=np.int32),
        "uvs": np.random.rand(6, 2).astype(np.float32),
        "face_uvs": np.array([[0, 1, 2, 3], [2, 4, 3, -1], [3, 4, 5, -1]], dtype=np.int32),
        "face_material": np.array([0, 0, 1], dtype=np.int16),
        "material_names": np.array(["M_Face", "M_Teeth"]),
        "identity_basis": np.random.rand(2, 6, 3).astype(np.float32),
        "expression_basis": np.random.rand(1, 6, 3).astype(np.float32),
        "expression_names": np.array(["jawOpen"]),
        "landmarks68": np.arange(68, dtype=np.int32) % 6,
        "rigid_landmarks": np.arange(9, dtype=np.int32),
        "region_names": np.array(["face", "teeth"]),
        "region_vertex_ranges": np.array([[0, 3], [4, 5]], dtype=np.int32),
        "region_face_ranges": np.array([[0, 1], [2, 2]], dtype=np.int32),
    }
    arrays.update(over)
    return {k: v for k, v in arrays.items() if v is not None}


def test_tiny_npz_and_file_errors(tmp_path):
    path = tmp_path / "tiny.npz"
    np.savez(path, **_tiny_ict())
    m = ICTHeadModel(path=path, n_identity=2, scale=1.0)
    assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3], [2, 4, 3], [3, 4, 5]]
    assert m.face_regions.tolist() == [0, 0, 0, 1] and m.vertex_regions.tolist() == [0, 0, 0, 0, 1, 1]
    verts = m(torch.rand(3, 2), torch.rand(3, 1))
    torch.testing.assert_close(m.landmarks(verts), verts[:, torch.arange(68) % 6])

    np.savez(path, **_tiny_ict(landmarks68=None, faces=None))
    with pytest.raises(HeadModelError, match=r"lacks keys \['faces', 'landmarks68'\]"):
        ICTHeadModel(path=path)
    np.savez(path, **_tiny_ict(identity_basis=np.zeros((2, 5, 3), np.float32)))
    with pytest.raises(HeadModelError, match="'identity_basis' has shape"):
        ICTHeadModel(path=path)
    path.write_bytes(b"not a zip")
    with pytest.raises(HeadModelError, match="cannot read"):
        ICTHeadModel(path=path)
