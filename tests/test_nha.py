"""Mesh avatar (NHA): networks, stages, stage training, noisy start, export interface."""

from __future__ import annotations

import math

import pytest
import torch

from src.cli.train import train
from src.models.nha.networks import FiLMSiren, GeometryMLP, MappingNetwork, UVEmbedding, positional_encoding
from src.models.nha.stages import parse_stages, stage_at, total_steps
from tests.helpers import compose_train
from tests.test_train import _overrides

pytestmark = pytest.mark.integration  # trains the mesh avatar

# every nha_* experiment's fast_dev_run: tests/test_model_headmodel.py::test_experiment_fast_dev_run


def test_positional_encoding_shape_and_values():
    x = torch.tensor([[0.5, -0.25, 0.0]])
    enc = positional_encoding(x, 2)
    assert enc.shape == (1, 3 * 5)
    torch.testing.assert_close(enc[0, 3], torch.sin(torch.tensor(0.5 * math.pi)))


def test_geometry_mlp_starts_at_zero_and_has_gradients():
    g = GeometryMLP(cond_dim=5, hidden=16, layers=2, n_freqs=2, max_offset=0.01)
    x, cond = torch.rand(10, 3), torch.rand(4, 5, requires_grad=True)
    out = g(x, cond)
    assert out.shape == (4, 10, 3) and out.abs().max() == 0  # zero-initialised head: no offsets at start
    out.sum().backward()
    assert g.out.weight.grad.abs().sum() > 0


def test_siren_init_and_film_against_loop():
    siren = FiLMSiren(in_dim=7, hidden=8, layers=2, out_dim=3)
    first = siren.linears[0].weight
    assert first.abs().max() <= 1 / 7 + 1e-6
    assert siren.linears[1].weight.abs().max() <= math.sqrt(6 / 8) / 30 + 1e-6
    mapping = MappingNetwork(cond_dim=4, hidden=8, layers=2, width=16, depth=2)
    freq, phase = mapping(torch.rand(2, 4))
    assert freq.shape == (2, 2, 8) and phase.shape == (2, 2, 8)
    x = torch.rand(5, 7)
    batch = torch.tensor([0, 1, 1, 0, 1])
    out = siren(x, freq, phase, batch)
    for p in range(5):  # slow reference, one sample at a time
        h = x[p]
        for i, lin in enumerate(siren.linears):
            h = torch.sin(freq[batch[p], i] * lin(h) + phase[batch[p], i])
        torch.testing.assert_close(out[p], siren.out(h))


def test_uv_embedding_samples_grid():
    emb = UVEmbedding(channels=2, size=4)
    with torch.no_grad():
        emb.grid.zero_()
        emb.grid[0, :, 0, 0] = torch.tensor([1.0, 2.0])  # top-left texel = v near 1, u near 0
    out = emb(torch.tensor([[0.125, 0.875]]))  # centre of that texel
    torch.testing.assert_close(out[0], torch.tensor([1.0, 2.0]))


def test_stages_schedule_and_errors():
    cfg = {
        "a": {"steps": 2, "lr": {"texture": 1e-3}},
        "b": {"steps": 3, "lr": {"geometry": 1e-4}, "loss": {"rgb_l1": 2}},
    }
    stages = parse_stages(cfg, {"texture", "geometry"}, {"rgb_l1"})
    assert [stage_at(stages, e).name for e in range(7)] == ["a", "a", "b", "b", "b", "b", "b"]
    assert total_steps(stages) == 5
    with pytest.raises(ValueError, match="unknown parameter groups"):
        parse_stages({"a": {"steps": 1, "lr": {"textur": 1}}}, {"texture"}, set())
    with pytest.raises(ValueError, match="unknown loss terms"):
        parse_stages({"a": {"steps": 1, "lr": {}, "loss": {"rgb": 1}}}, {"texture"}, {"rgb_l1"})
    # a 0-step stage keeps its place in the order but is skipped; its names are still checked
    stages = parse_stages(
        {"z": {"steps": 0, "lr": {"texture": 1}}, **cfg}, {"texture", "geometry"}, {"rgb_l1"}
    )
    assert [s.name for s in stages] == ["a", "b"]
    with pytest.raises(ValueError, match="unknown parameter groups"):
        parse_stages({"z": {"steps": 0, "lr": {"textur": 1}}, **cfg}, {"texture", "geometry"}, {"rgb_l1"})
    with pytest.raises(ValueError, match="steps > 0"):
        parse_stages({"z": {"steps": 0, "lr": {}}}, {"texture"}, set())
    # frozen groups are dropped from every stage; a typo in their names is an error
    frozen = parse_stages(cfg, {"texture", "geometry"}, {"rgb_l1"}, frozen=("geometry",))
    assert [s.lr for s in frozen] == [{"texture": 1e-3}, {}]
    with pytest.raises(ValueError, match="model.frozen"):
        parse_stages(cfg, {"texture", "geometry"}, {"rgb_l1"}, frozen=("geometri",))


def test_nha_trains_each_stage_and_checkpoint_renders(tiny_subject, tmp_path):
    """Two stages, a checkpoint that renders, bakes and gives geometry; and one checkpoint, one score: the
    run's test loop and evaluate.py on its last.ckpt agree (held-out fit included) within 1e-3."""
    extra = [
        "experiment=nha_synthetic", "logger=csv", "callbacks.rich_progress_bar=null", "trainer.max_epochs=2",
        "model.stages.texture.steps=4", "model.stages.joint.steps=4", "trainer.check_val_every_n_epoch=1",
        "model.init_noise.rotation_deg=1.0", "model.heldout_fit.steps=2",
    ]  # fmt: skip
    cfg = compose_train(_overrides(tiny_subject, tmp_path, extra), output_dir=tmp_path)
    metrics = train(cfg)
    assert metrics["train/stage_index"] == 1.0  # the second stage ran
    from src.cli.evaluate import run as evaluate_run

    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ecfg = compose_train(
        [f"ckpt_path={ckpt}", f"out_dir={tmp_path / 'eval'}", "metrics.fid=false"],
        output_dir=tmp_path / "eval",
        config_name="evaluate",
    )
    results = evaluate_run(ecfg)
    shared = [k for k in results if f"test/{k}" in metrics]
    assert {"psnr", "ssim", "psnr_masked", "geometry_mean_mm", "geometry_aligned_mean_mm"} <= set(shared)
    for k in shared:
        assert abs(results[k] - metrics[f"test/{k}"]) < 1e-3, (k, results[k], metrics[f"test/{k}"])
    assert len(list((tmp_path / "eval" / "pred").glob("*.png"))) == 2  # the PNGs are a by-product
    from src.models.loading import load_avatar

    model, _ = load_avatar(tmp_path / "checkpoints" / "last.ckpt")
    img = model.predict_frames(torch.tensor([0, 11]))
    assert img.shape == (2, 3, 48, 48) and img.min() >= 0 and img.max() <= 1
    tex = model.bake_texture(64)
    assert tex.shape == (3, 64, 64) and tex.std() > 0.01
    verts = model.personalized_vertices(torch.zeros(1, model.net.headmodel.n_expression))
    assert verts.shape == (1, 26719, 3)
    from src.models.loading import geometry_scores

    geo = geometry_scores(model, "test")  # against ground_truth/vertices.npy, face region
    assert 0 < geo["geometry_mean_mm"] < 5 and geo["geometry_hausdorff_mm"] >= geo["geometry_mean_mm"]
    assert 0 < geo["geometry_aligned_mean_mm"] < 5


def test_noisy_start_priors_pull_towards_the_start_not_the_truth(tiny_subject, tmp_path):
    """With init_noise the priors anchor at the perturbed start (what a tracker gave), and a restored
    model rebuilds the same anchors; the truth never enters the loss."""
    import hydra

    cfg = compose_train(
        _overrides(
            tiny_subject,
            tmp_path,
            ["experiment=nha_synthetic_noisy", "model.stages.geometry.steps=3", "debug=fdr"],
        ),
        output_dir=tmp_path,
    )
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    dm.prepare_data()

    model = hydra.utils.instantiate(cfg.model)
    model.attach(dm.subject())
    truth, tables = model.frames, model.tables
    assert (tables.identity - truth.identity).abs().mean() > 0.1  # identity noise 0.3
    for k in ("identity", "expression", "rotation", "translation"):
        torch.testing.assert_close(tables.prior(k), getattr(tables, k).detach())
    assert [s.name for s in model.stages] == ["geometry", "texture", "joint"]
    restored = hydra.utils.instantiate(cfg.model)  # as a checkpoint load builds it: no frames yet
    restored.on_load_checkpoint({"state_dict": model.state_dict()})
    for k in ("identity", "expression", "rotation", "translation"):
        torch.testing.assert_close(restored.tables.prior(k), tables.prior(k))
    # its first stage (the one fast_dev_run trains) fits geometry without the photometric term
    metrics = train(cfg)
    assert "train/landmarks" in metrics and "train/silhouette" in metrics and "train/rgb_l1" not in metrics
