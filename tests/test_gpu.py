"""CUDA checks (run with `python -m pytest -m gpu` on a machine with a GPU; skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

from src.render import Cameras, MeshRenderer, intrinsics_from_fov, look_at

pytestmark = pytest.mark.gpu


def test_renderer_cuda_matches_cpu(ict_model):
    res = 128
    K = intrinsics_from_fov(24.0, res, res)
    R, t = look_at(torch.tensor([[0.0, 0.0, 0.72]]), torch.zeros(1, 3))
    cams = Cameras(K.expand(2, 3, 3), R.expand(2, 3, 3), t.expand(2, 3), (res, res))
    verts = ict_model(torch.zeros(2, ict_model.n_identity), torch.zeros(2, ict_model.n_expression))
    colors = torch.rand(verts.shape[1], 3)
    r = MeshRenderer()
    cpu = r(verts, ict_model.faces, cams, vertex_colors=colors)
    gpu = r(verts.cuda(), ict_model.faces.cuda(), cams.to("cuda"), vertex_colors=colors.cuda())
    assert (cpu["face_idx"] == gpu["face_idx"].cpu()).float().mean() > 0.999
    torch.testing.assert_close(cpu["alpha"], gpu["alpha"].cpu(), atol=1e-3, rtol=0)


def test_fast_dev_run_on_gpu(tiny_subject, tmp_path):
    from src.cli.train import train
    from tests.helpers import compose_train
    from tests.test_train import _overrides

    extra = ["experiment=baseline_synthetic", "debug=fdr", "trainer=gpu"]
    overrides = _overrides(tiny_subject, tmp_path, extra)
    metrics = train(compose_train(overrides, output_dir=tmp_path))
    assert "test/psnr" in metrics


def test_selfie_generator_cuda_matches_cpu():
    from src.models.selfie.avatar_net import SelfieGenerator
    from src.models.selfie.conditioning import split_conditioning

    torch.manual_seed(0)
    g = SelfieGenerator(64, 32, {"size": 32, "channels": 4, "channel_base": 256}, {"size": 16, "channels": 2},
                        {"channel_base": 1024, "channel_max": 64}).eval()  # fmt: skip
    cond = split_conditioning(torch.rand(2, 6, 64, 64))
    with torch.no_grad():
        cpu = g(cond, randomize_noise=False)["image"]
        gpu = g.cuda()({k: v.cuda() for k, v in cond.items()}, randomize_noise=False)["image"]
    torch.testing.assert_close(cpu, gpu.cpu(), atol=1e-3, rtol=1e-3)
