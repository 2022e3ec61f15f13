"""Mesh avatar: per-vertex offset bounds (hair, body) and coarse stages that grow the geometry."""

from __future__ import annotations

import pytest
import torch

from src.cli.train import train
from src.core.outputs import Batch, Out
from src.losses import mesh_edges
from src.models.nha.bounds import height_ramps, offset_bounds, smooth_on_mesh
from src.models.nha.networks import GeometryMLP
from src.models.nha.stages import parse_stages
from tests.helpers import compose_train
from tests.test_train import _overrides

pytestmark = pytest.mark.integration  # trains the mesh avatar's shape stage


def test_smooth_on_mesh_against_loop():
    g = torch.Generator().manual_seed(0)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2], [2, 3, 4], [5, 6, 7]])
    values = torch.rand(9, generator=g)  # vertex 8 is in no face
    out = smooth_on_mesh(values, faces, 3)
    edges = mesh_edges(faces).tolist()
    ref = values.clone()
    for _ in range(3):  # slow reference: one vertex at a time
        new = ref.clone()
        for v in range(9):
            nb = [b for a, b in edges if a == v] + [a for a, b in edges if b == v]
            if nb:
                new[v] = 0.5 * ref[v] + 0.5 * sum(ref[n] for n in nb) / len(nb)
        ref = new
    torch.testing.assert_close(out, ref)
    assert out[8] == values[8]
    torch.testing.assert_close(smooth_on_mesh(values, faces, 0), values)


def test_bounds_grow_above_the_brows_on_hair_regions_and_below_the_chin(ict_model):
    hm = ict_model
    t, lm = hm.template, hm.landmarks(hm.template[None])[0]
    offset = torch.isin(
        hm.vertex_regions, torch.tensor([hm.region_names.index(r) for r in hm.offset_regions])
    )
    hair = torch.isin(hm.vertex_regions, torch.tensor([hm.region_names.index(r) for r in hm.hair_regions]))
    flat = offset_bounds(t, lm, hm.faces, offset, hair, base=0.01)
    torch.testing.assert_close(flat, torch.full_like(flat, 0.01))  # no extras: the first version
    b = offset_bounds(t, lm, hm.faces, offset, hair, base=0.01, hair=0.05, body=0.12)
    above, below = height_ramps(t, lm)
    y = t[:, 1]
    top, bottom = y.argmax(), y.argmin()
    assert hair[top] and abs(b[top] - 0.06) < 1e-6  # the crown may move base + hair
    assert offset[bottom] and abs(b[bottom] - 0.13) < 1e-6  # the mesh's lower edge base + body
    face = ~hair & offset & (below == 0)
    assert face.any() and torch.allclose(b[face], torch.tensor(0.01))  # the face (forehead too) keeps base
    between = (above == 0) & (below == 0)
    assert torch.allclose(b[between], torch.tensor(0.01))  # eyes to chin: base everywhere
    smooth = offset_bounds(t, lm, hm.faces, offset, hair, base=0.01, hair=0.05, body=0.12, smooth=10)
    e = mesh_edges(hm.faces)
    assert (smooth[e[:, 0]] - smooth[e[:, 1]]).abs().max() < (b[e[:, 0]] - b[e[:, 1]]).abs().max()
    assert smooth.min() >= 0.01 - 1e-7 and smooth.max() <= 0.13 + 1e-7


def test_geometry_mlp_respects_a_per_vertex_bound():
    g = GeometryMLP(cond_dim=3, hidden=16, layers=2, n_freqs=2, max_offset=0.01)
    with torch.no_grad():
        g.out.weight.normal_(0, 50.0)  # saturate tanh
    x, cond = torch.rand(6, 3), torch.rand(2, 3)
    bound = torch.tensor([0.01, 0.02, 0.05, 0.1, 0.01, 0.0])
    out = g(x, cond, bound)
    assert (out.abs() <= bound[None, :, None] + 1e-7).all()
    assert out[:, 3].abs().max() > 0.05  # the large bound is used, not max_offset
    assert (g(x, cond).abs() <= 0.01 + 1e-7).all()


def test_stage_resolution_is_parsed_and_checked():
    cfg = {"shape": {"steps": 1, "lr": {"geometry": 1e-3}, "resolution": 64, "supersample": 1},
           "texture": {"steps": 1, "lr": {"texture": 1e-3}}}  # fmt: skip
    shape, texture = parse_stages(cfg, {"geometry", "texture"}, set())
    assert (shape.resolution, shape.supersample) == (64, 1)
    assert (texture.resolution, texture.supersample) == (None, None)
    with pytest.raises(ValueError, match="resolution=0"):
        parse_stages({"a": {"steps": 1, "lr": {}, "resolution": 0}}, set(), set())


def test_shape_stage_renders_coarse_and_moves_the_geometry(tiny_subject, tmp_path):
    """A coarse silhouette stage with large bounds: its steps render and score at the stage's size, and the
    offsets leave zero."""
    extra = [
        "experiment=nha_synthetic", "logger=csv", "callbacks.rich_progress_bar=null", "trainer.max_epochs=2",
        "model.stages.shape.steps=4", "model.stages.shape.resolution=24", "model.stages.texture.steps=4",
        "model.stages.joint.steps=0", "model.net.offset_bounds={hair: 0.05, body: 0.1, smooth: 2}",
        "test=false",
    ]  # fmt: skip
    cfg = compose_train(_overrides(tiny_subject, tmp_path, extra), output_dir=tmp_path)
    train(cfg)
    from src.models.loading import load_avatar, split_loader

    model, dm = load_avatar(tmp_path / "checkpoints" / "last.ckpt")
    assert model.net.bound.max() > 0.05  # the bounds came from the config
    t = model.tables
    offsets = model.net.refined_canonical(t.identity, t.expression[:2], t.rotation[:2])[1]
    assert offsets.abs().max() > 1e-4  # the shape stage moved the geometry
    assert model.stage.name == "shape"  # no trainer: epoch 0
    batch = next(iter(split_loader(dm, "train", 2)))
    with torch.no_grad():
        out = model.train_outputs(batch)
        total, parts = model.loss_dict(batch, out)
    assert tuple(out[Out.IMAGE].shape[-2:]) == (24, 24) and tuple(batch[Batch.IMAGE].shape[-2:]) == (48, 48)
    assert torch.isfinite(total) and parts["silhouette"] > 0
