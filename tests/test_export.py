"""Mesh export: UV-seam splitting by hand, OBJ/MTL/PNG/GLB from a trained avatar, the CLI, errors."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from src.export import ExportError, export_mesh, resolve_expression, split_uv_seams
from src.export.__main__ import load_model
from src.reenact import ReenactError
from tests.avatar_ckpt import tiny_avatar_checkpoint
from tests.helpers import compose_train

pytestmark = pytest.mark.integration  # exports a trained checkpoint


def test_split_uv_seams_by_hand():
    """Two triangles sharing edge (1,2); vertex 2 has different uvs on the two sides (a seam), vertex 1
    has two uv rows with the same value (merged). Unique (vertex, uv) pairs: 0,1,2a,2b,3 -> 5."""
    faces = np.array([[0, 1, 2], [2, 1, 3]])
    uvs = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [1.0, 1.0]])
    face_uvs = np.array([[0, 1, 2], [4, 3, 5]])
    vertex_of, uv_of, new_faces = split_uv_seams(faces, face_uvs, uvs)
    assert len(vertex_of) == 5 and new_faces.shape == (2, 3)
    assert new_faces[0, 1] == new_faces[1, 1]  # vertex 1 not split: same uv value
    assert new_faces[0, 2] != new_faces[1, 0]  # vertex 2 split at the seam
    np.testing.assert_array_equal(vertex_of[new_faces], faces)  # positions unchanged per corner
    np.testing.assert_array_equal(uv_of[new_faces], uvs[face_uvs])  # uvs unchanged per corner


@pytest.fixture(scope="module")
def avatar(tiny_subject, tmp_path_factory):
    ckpt = tiny_avatar_checkpoint(tiny_subject, tmp_path_factory.getbasetemp())
    return ckpt, load_model(ckpt)


def _obj_records(path, tag: str) -> np.ndarray:
    rows = [line.split()[1:] for line in path.read_text().splitlines() if line.startswith(tag + " ")]
    return np.array(rows, dtype=np.float64)


def test_export_obj_and_glb(avatar, tmp_path):
    """The GLB loads back with one vertex per unique (vertex, uv) pair, the OBJ's face count and the same
    set of positions as the personalised mesh; the OBJ loads in trimesh; the texture is the baked one."""
    _, model = avatar
    res = export_mesh(model, tmp_path, texture_size=64)
    hm = model.headmodel
    for key in ("obj", "mtl", "texture", "glb", "json"):
        assert res[key].is_file() and res[key].stat().st_size > 0, key
    assert f"map_Kd {res['texture'].name}" in res["mtl"].read_text()
    assert f"mtllib {res['mtl'].name}" in res["obj"].read_text()[:300]
    assert Image.open(res["texture"]).size == (64, 64)
    n_hidden = int(hm.region_face_mask(res["hidden_regions"]).sum())
    assert res["n_faces"] == hm.faces.shape[0] - n_hidden and "eye_blend_left" in res["hidden_regions"]

    verts = model.personalized_vertices(torch.zeros(1, hm.n_expression))[0].numpy()
    used = np.unique(hm.faces[~hm.region_face_mask(res["hidden_regions"])].numpy())
    obj_v = _obj_records(res["obj"], "v")
    assert len(obj_v) == res["n_vertices"] == len(used)
    np.testing.assert_allclose(obj_v, verts[used], atol=1e-6)

    scene = trimesh.load(res["glb"])
    (glb,) = scene.geometry.values()
    assert len(glb.vertices) == res["n_glb_vertices"] > res["n_vertices"]
    assert len(glb.faces) == res["n_faces"]
    # the GLB stores float32 positions exactly: the same set as the mesh's vertices
    np.testing.assert_array_equal(
        np.unique(glb.vertices, axis=0), np.unique(verts[used].astype(np.float64), axis=0)
    )
    assert glb.visual.uv.shape == (len(glb.vertices), 2)
    glb_tex = np.asarray(glb.visual.material.baseColorTexture.convert("RGB"))
    np.testing.assert_array_equal(glb_tex, np.asarray(Image.open(res["texture"]).convert("RGB")))

    obj = trimesh.load(res["obj"], force="mesh")
    assert len(obj.faces) == res["n_faces"] and obj.visual.uv is not None


def test_texture_orientation_obj_and_glb(avatar, tmp_path):
    """Colours that vary smoothly over the head survive baking: the texture sampled at each exported
    vertex's uv (as trimesh reads OBJ and GLB) is that vertex's colour; a flipped v would not be."""
    from scipy.spatial import cKDTree

    _, model = avatar
    saved = model.color_logits.detach().clone()
    verts = model.personalized_vertices(torch.zeros(1, model.headmodel.n_expression))[0]
    rgb = ((verts - verts.min(0).values) / (verts.max(0).values - verts.min(0).values)).clamp(0.05, 0.95)
    try:
        with torch.no_grad():
            model.color_logits.copy_(torch.logit(rgb))
        res = export_mesh(model, tmp_path, texture_size=128)
    finally:
        with torch.no_grad():
            model.color_logits.copy_(saved)
    for key in ("obj", "glb"):
        mesh = trimesh.load(res[key], force="mesh")
        image = Image.open(res["texture"])
        _, nearest = cKDTree(verts.numpy()).query(mesh.vertices)
        want = rgb.numpy()[nearest]
        for flip, limit in ((False, 0.03), (True, None)):
            uv = mesh.visual.uv.copy()
            uv[:, 1] = 1 - uv[:, 1] if flip else uv[:, 1]
            err = np.median(np.abs(trimesh.visual.uv_to_color(uv, image)[:, :3] / 255.0 - want))
            assert (err < limit) if limit else (err > 0.05), (key, flip, err)


def test_export_expression_and_options(avatar, tmp_path):
    _, model = avatar
    res = export_mesh(
        model, tmp_path, expression="surprise", texture_size=32, formats=("glb",), hidden_regions=[]
    )
    assert res["glb"].name == "avatar_surprise.glb" and "obj" not in res
    assert res["n_faces"] == model.headmodel.faces.shape[0]
    (glb,) = trimesh.load(res["glb"]).geometry.values()
    assert len(glb.vertices) == res["n_glb_vertices"]
    surprise = model.personalized_vertices(resolve_expression(model, "surprise")[0][None])[0].numpy()
    neutral = model.personalized_vertices(torch.zeros(1, model.headmodel.n_expression))[0].numpy()
    np.testing.assert_array_equal(
        np.unique(glb.vertices, axis=0), np.unique(surprise.astype(np.float64), axis=0)
    )
    assert np.abs(surprise - neutral).max() > 0.003  # the jaw drops by millimetres (metres)
    with pytest.raises(ReenactError, match="did you mean"):
        export_mesh(model, tmp_path, expression="smilee", texture_size=32)
    with pytest.raises(ExportError, match="formats"):
        export_mesh(model, tmp_path, formats=("fbx",))


def test_export_cli(avatar, tmp_path):
    from src.export.__main__ import run

    ckpt, _ = avatar
    out = tmp_path / "cli"
    cfg = compose_train(
        [f"ckpt_path={ckpt}", f"out_dir={out}", "expression={smile: 0.5, clueless: 0.5}", "texture_size=32"],
        output_dir=out,
        config_name="export",
    )
    res = run(cfg)
    assert res["obj"].parent == out and res["obj"].name == "avatar_smile_clueless.obj"
    assert len(trimesh.load(res["glb"]).geometry) == 1
