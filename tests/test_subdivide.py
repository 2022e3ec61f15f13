import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
# Midpoint subdivision of head models: against a loop, on ICT-FaceKit, rendered, and trained (NHA).

import pytest
import torch

from src.headmodel.base import HeadModelError
from src.headmodel.subdivide import (
    SubdividedHeadModel,
    midpoint_subdivision,
    remap_barycentric,
    subdivision_matrix,
)
from src.utils.assets import AssetNotFoundError, find_asset

try:
    find_asset("ict_facekit/ict_facekit_light.npz")
except AssetNotFoundError:
    pytest.skip("ICT-FaceKit asset not available (set AVATAR_ASSETS)", allow_module_level=True)


def _loop_split(tris: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slow reference: one triangle at a time, new points numbered by sorted unique edge."""
    rows = tris.tolist()
    edges = sorted({tuple(sorted((t[i], t[(i + 1) % 3]))) for t in rows for i in range(3)})
    index = {e: n + k for k, e in enumerate(edges)}
    out = []
    for a, b, c in rows:
        ab, bc, ca = (index[tuple(sorted(e))] for e in ((a, b), (b, c), (c, a)))
        out += [[a, ab, ca], [ab, b, bc], [ca, bc, c], [ab, bc, ca]]
    return torch.tensor(out), torch.tensor(edges).reshape(-1, 2)


@pytest.fixture(scope="module")
def sub1(ict_model):
    return SubdividedHeadModel(ict_model, levels=1)


@pytest.fixture(scope="module")
def params():
    g = torch.Generator().manual_seed(0)
    return 0.7 * torch.randn(2, 100, generator=g), torch.rand(2, 53, generator=g)


def test_vectorised_matches_loop_with_uv_seams(ict_model):
    # a quad whose every edge is a uv seam, then all of ICT-FaceKit
    quad, quad_uvs = torch.tensor([[0, 1, 2], [0, 2, 3]]), torch.tensor([[0, 1, 2], [3, 4, 5]])
    f4, fu4, edges, uv_edges = midpoint_subdivision(quad, quad_uvs, 4, 6)
    assert len(edges) == 5 and len(uv_edges) == 6  # the diagonal is shared in 3D but not in uv space
    for faces, face_uvs, n, t in (
        (quad, quad_uvs, 4, 6),
        (ict_model.faces, ict_model.face_uvs, 26719, None),
    ):
        t = t or ict_model.uvs.shape[0]
        f4, fu4, edges, uv_edges = midpoint_subdivision(faces, face_uvs, n, t)
        ref_f4, ref_edges = _loop_split(faces, n)
        ref_fu4, ref_uv_edges = _loop_split(face_uvs, t)
        for got, want in ((f4, ref_f4), (edges, ref_edges), (fu4, ref_fu4), (uv_edges, ref_uv_edges)):
            torch.testing.assert_close(got, want)
    S = subdivision_matrix(torch.tensor([[0, 1], [1, 2]]), 3).to_dense()
    torch.testing.assert_close(
        S, torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0], [0, 0.5, 0.5]])
    )


def test_counts_and_levels(ict_model, sub1):
    V, F = ict_model.template.shape[0], ict_model.faces.shape[0]
    n_edges = len(torch.unique(ict_model.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).sort(1).values, dim=0))
    assert sub1.template.shape == (V + n_edges, 3) == (105569, 3) and sub1.faces.shape == (4 * F, 3)
    assert sub1.n_base_vertices == V == 26719 and sub1.faces.max() == V + n_edges - 1
    sub2 = SubdividedHeadModel(ict_model, levels=2)
    assert sub2.template.shape == (419929, 3) and sub2.faces.shape == (16 * F, 3) == (835520, 3)
    sub0 = SubdividedHeadModel(ict_model, levels=0)
    for name in ("template", "faces", "uvs", "face_uvs", "vertex_regions", "face_regions", "lmk_bary"):
        torch.testing.assert_close(getattr(sub0, name), getattr(ict_model, name))
    for bad in (-1, 3, 1.5):
        with pytest.raises(HeadModelError, match="levels="):
            SubdividedHeadModel(ict_model, levels=bad)
    with pytest.raises(HeadModelError, match="base must be a HeadModel"):
        SubdividedHeadModel(torch.nn.Linear(2, 2))
    # from a config, as Hydra passes it
    cfg = {"_target_": "src.headmodel.ict.ICTHeadModel", "n_identity": 10, "n_expression": 5}
    small = SubdividedHeadModel(cfg)
    assert (small.n_identity, small.n_expression, small.n_joint_pose) == (10, 5, 0)


def test_canonical_is_subdivision_of_the_base(ict_model, sub1, params):
    identity, expression = params
    base = ict_model.canonical(identity, expression)
    verts = sub1.canonical(identity, expression)
    S = sub1.subdivision_matrix()
    assert S.shape == (105569, 26719)
    for b in range(2):
        torch.testing.assert_close(verts[b], torch.sparse.mm(S, base[b]), atol=1e-6, rtol=0)
    e = sub1.edges
    torch.testing.assert_close(verts[:, :26719], base, atol=0, rtol=0)
    torch.testing.assert_close(verts[:, 26719:], 0.5 * (base[:, e[:, 0]] + base[:, e[:, 1]]))
    rot, trans = torch.tensor([[0.2, -0.4, 0.1]] * 2), torch.tensor([[0.01, 0.0, -0.02]] * 2)
    posed = sub1(identity, expression, rot, trans)
    torch.testing.assert_close(posed[:, :26719], ict_model(identity, expression, rot, trans))
    torch.testing.assert_close(posed, sub1.upsample(ict_model(identity, expression, rot, trans)))
    uvs = ict_model.uvs
    torch.testing.assert_close(sub1.uvs[: len(uvs)], uvs)


def test_landmarks_unchanged(ict_model, sub1, params):
    identity, expression = params
    sub2 = SubdividedHeadModel(ict_model, levels=2)
    want = ict_model.landmarks(ict_model.canonical(identity, expression))
    for sub in (sub1, sub2):
        got = sub.landmarks(sub.canonical(identity, expression))
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    # general (not one-hot) barycentrics: the same point in the child triangle
    g = torch.Generator().manual_seed(1)
    faces = torch.randint(0, len(ict_model.faces), (500,), generator=g)
    bary = torch.rand(500, 3, generator=g) ** 3
    bary = bary / bary.sum(1, keepdim=True)
    child, cbary = remap_barycentric(faces, bary)
    assert (cbary >= -1e-6).all() and torch.allclose(cbary.sum(1), torch.ones(500))
    v, v1 = ict_model.template, sub1.template
    parent_pts = (v[ict_model.faces[faces]] * bary[..., None]).sum(1)
    child_pts = (v1[sub1.faces[child]] * cbary[..., None]).sum(1)
    torch.testing.assert_close(child_pts, parent_pts, atol=1e-6, rtol=0)


def test_regions_materials_and_forwarded_attributes(ict_model, sub1):
    V = 26719
    vr, fr = sub1.vertex_regions, sub1.face_regions
    assert vr.shape == (105569,) and vr.min() >= 0 and vr.max() < len(sub1.region_names)
    torch.testing.assert_close(vr[:V], ict_model.vertex_regions)
    torch.testing.assert_close(fr, ict_model.face_regions.repeat_interleave(4))
    torch.testing.assert_close(sub1.face_material, ict_model.face_material.repeat_interleave(4))
    # every vertex (old and new) has the smallest region of its triangles, as ICT labels its own
    corner_regions = fr[:, None].expand(-1, 3).reshape(-1)
    smallest = torch.full((len(vr),), 99).scatter_reduce(0, sub1.faces.reshape(-1), corner_regions, "amin")
    torch.testing.assert_close(vr, smallest)
    mask = sub1.region_face_mask(["face"])
    assert mask.sum() == 4 * ict_model.region_face_mask(["face"]).sum()
    # ICT extras that presets, export, reenactment and data generation use
    from src.reenact.pipeline import expression_range

    assert expression_range(sub1) == (0.0, 1.0) and sub1.material_names == ict_model.material_names
    torch.testing.assert_close(
        sub1.expression_vector({"jawOpen": 0.5}), ict_model.expression_vector({"jawOpen": 0.5})
    )
    torch.testing.assert_close(sub1.landmark_vertices, ict_model.landmark_vertices)
    assert sub1.expression_names == ict_model.expression_names and sub1.n_identity == 100
    assert not hasattr(sub1, "identity_basis")  # tracking's linear fast path needs the base model
    assert not any(k in sub1.state_dict() for k in ("faces", "template", "edges"))


def test_render_silhouette_matches_base(ict_model, sub1):
    from src.headmodel.regions import ICT_OVERLAY_REGIONS
    from src.render import Cameras, MeshRenderer, intrinsics_from_fov, look_at

    size = 64
    R, t = look_at(
        torch.tensor([[0.3, 0.05, 0.6]]), torch.tensor([[0.0, 0.02, 0.0]]), torch.tensor([[0.0, 1, 0]])
    )
    cams = Cameras(intrinsics_from_fov(24.0, size, size), R, t, (size, size))
    masks = []
    for hm in (ict_model, sub1):
        keep = ~hm.region_face_mask(list(ICT_OVERLAY_REGIONS))
        out = MeshRenderer()(hm.template[None], hm.faces[keep], cams, soft_alpha=False)
        masks.append(out["mask"])
    assert 0.2 < masks[0].float().mean() < 0.9
    assert (masks[0] == masks[1]).float().mean() > 0.999


def test_subdivided_experiment_renders_the_subject_with_the_base_model(tiny_subject, tmp_path):
    """Config only: tests/test_nha.py fast_dev_runs experiment=nha_synthetic_subdivided itself."""
    from omegaconf import OmegaConf

    from tests.helpers import compose_train
    from tests.test_train import _overrides

    extra = ["experiment=nha_synthetic_subdivided"]
    cfg = compose_train(_overrides(tiny_subject, tmp_path, extra), output_dir=tmp_path)
    assert cfg.model.headmodel._target_.endswith("SubdividedHeadModel")
    data_hm = OmegaConf.to_container(cfg.data, resolve=True)["headmodel"]
    assert data_hm["_target_"] == "src.headmodel.ict.ICTHeadModel"  # the subject is rendered with plain ICT


def test_flame_with_joints_and_general_landmarks(tmp_path):
    """A skinned model with non-one-hot landmark barycentrics (the fake FLAME of the FLAME tests)."""
    import pickle

    import numpy as np

    from src.headmodel.flame import FLAMEHeadModel
    from tests.test_headmodel_flame import _embeddings, _flame_dict

    with open(tmp_path / "flame.pkl", "wb") as fh:
        pickle.dump(_flame_dict(), fh, protocol=2)
    np.save(tmp_path / "landmark_embedding.npy", _embeddings(np.random.default_rng(1))[1])
    base = FLAMEHeadModel(path=tmp_path / "flame.pkl", landmark_embedding=tmp_path / "landmark_embedding.npy")
    sub = SubdividedHeadModel(base, levels=2)
    g = torch.Generator().manual_seed(2)
    shape, expr, pose = (
        torch.randn(2, 100, generator=g),
        torch.randn(2, 50, generator=g),
        torch.randn(2, 12, generator=g) * 0.3,
    )
    rot = torch.randn(2, 3, generator=g) * 0.3
    want = base(shape, expr, rot, None, pose)
    got = sub(shape, expr, rot, None, pose)
    torch.testing.assert_close(got, torch.stack([torch.sparse.mm(sub.subdivision_matrix(), w) for w in want]))
    torch.testing.assert_close(sub.landmarks(got), base.landmarks(want), atol=1e-6, rtol=0)
    assert sub.n_joint_pose == base.n_joint_pose and sub.faces.shape[0] == 16 * base.faces.shape[0]
