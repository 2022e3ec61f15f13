"""Image avatar (SelfieAvatar): conditioning, generator, EMA, a fast_dev_run per experiment, reenactment."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split

import shutil
from pathlib import Path

import pytest
import torch

from src.cli.train import train
from src.core.outputs import Out
from src.models.selfie.avatar_net import SelfieGenerator, ema_beta, ema_update
from src.models.selfie.conditioning import HeadConditioner, split_conditioning
from src.render import MeshRenderer
from tests.helpers import CONF_DIR, compose_train, synthetic_config

pytestmark = pytest.mark.integration  # trains the image avatar

ABLATIONS = sorted(p.stem for p in (Path(CONF_DIR) / "ablation").glob("*.yaml"))
SMALL_GENERATOR = [
    "model.generator.style_dim=32", "model.generator.face.size=32", "model.generator.face.channel_base=256",
    "model.generator.background.size=16", "model.generator.style.channel_base=512",
    "model.generator.style.channel_max=32", "model.generator.style.min_size=4",
    "model.discriminator.channel_base=256", "model.discriminator.channel_max=32",
    "model.adv_start_epoch=0",  # the discriminator trains from the first step in these short runs
]  # fmt: skip
TINY32 = {"resolution": 32, "n_frames": 10, "texture_size": 128, "supersample": 1, "batch_size": 5}


@pytest.fixture(scope="module")
def subject32(tmp_path_factory, ict_model) -> Path:
    """A 10-frame, 32 px synthetic subject (the generators need power-of-two sizes)."""
    from src.datamodules.synthetic.generate import generate_subject

    root = tmp_path_factory.mktemp("selfie") / "subject"
    cfg = synthetic_config(**TINY32)  # the data module's hash: training runs use it as it is
    generate_subject(root, ict_model, config=cfg, **cfg)
    return root


def selfie_overrides(subject: Path, tmp_path: Path, extra: list[str]) -> list[str]:
    data_dir = tmp_path / "data"
    shutil.copytree(subject, data_dir / "synthetic" / "seed0_32px_10f")
    gen = [f"data.generator.{k}={v}" for k, v in TINY32.items()]
    return [
        f"paths.data_dir={data_dir}", *gen, "data.val_frames=2", "data.test_frames=2", "data.batch_size=2",
        "metrics.fid=false", "logger=csv", *SMALL_GENERATOR, *extra,
    ]  # fmt: skip


def test_conditioning_images(ict_model):
    from src.render import Cameras, look_at
    from src.render.camera import intrinsics_from_fov

    cond = HeadConditioner(ict_model, MeshRenderer(), ["eyelashes_left", "eyelashes_right"])
    b = 2
    R, t = look_at(torch.tensor([[0.0, 0.0, 0.7]]).expand(b, 3), torch.zeros(b, 3))
    cams = Cameras(intrinsics_from_fov(24.0, 32, 32).expand(b, 3, 3), R, t, (32, 32))
    zeros = torch.zeros(b, 3)
    out = cond(torch.zeros(ict_model.n_identity), torch.zeros(b, ict_model.n_expression), zeros, zeros, cams)
    assert out[Out.CONDITION_STACK].shape == (b, HeadConditioner.channels, 32, 32)
    m, render, uv = out[Out.CONDITION_MASK], out[Out.CONDITION], out[Out.CONDITION_UV]
    assert 0.1 < m.mean() < 0.9  # the head covers part of the image
    off = m.expand_as(render) == 0
    assert (render[off] == 0).all() and (uv[m.expand_as(uv) == 0] == 0).all()
    assert uv.max() <= 1 and render.max() <= 1 and render[~off].mean() > 0.2


def test_generator_shapes_fixed_latents_and_gradients():
    g = SelfieGenerator(
        32, 32, face={"size": 32, "channels": 4, "channel_base": 256}, background={"size": 16, "channels": 2},
        style={"channel_base": 512, "channel_max": 32, "min_size": 4}, seed=3,
    )  # fmt: skip
    cond = torch.rand(2, HeadConditioner.channels, 32, 32)
    out = g(split_conditioning(cond), randomize_noise=False)
    assert out[Out.IMAGE].shape == (2, 3, 32, 32) and out[Out.MATTE].shape == (2, 1, 32, 32)
    assert ((out[Out.MATTE] > 0) & (out[Out.MATTE] < 1)).all()
    again = g(split_conditioning(cond), randomize_noise=False)
    assert torch.equal(out[Out.IMAGE], again[Out.IMAGE])  # inference is deterministic
    g2 = SelfieGenerator(
        32, 32, {"size": 32, "channels": 4, "channel_base": 256}, {"size": 16, "channels": 2},
        {"channel_base": 512, "channel_max": 32, "min_size": 4}, seed=3,
    )  # fmt: skip
    assert torch.equal(g.z, g2.z)  # the subject's latents come from the seed
    (out[Out.IMAGE].sum() + out[Out.MATTE].sum()).backward()
    assert all(p.grad is not None for p in g.parameters())
    with pytest.raises(ValueError, match="generator makes 32x32"):
        g(split_conditioning(torch.rand(1, 6, 16, 16)))


def test_ema_update_and_beta():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    wa, wb = a.weight.detach().clone(), b.weight.detach().clone()
    ema_update(a, b, 0.75)
    assert torch.allclose(a.weight, 0.75 * wa + 0.25 * wb)
    assert ema_beta(4, 0, 500.0) == pytest.approx(0.0, abs=1e-12)  # ramp-up: copies at the start
    assert ema_beta(4, 10**6, 500.0) == pytest.approx(0.5 ** (4 / 500))
    assert ema_beta(4, 10, 500.0, rampup=None) == pytest.approx(0.5 ** (4 / 500))


@pytest.mark.parametrize("ablation", ABLATIONS)  # each experiment alone: tests/test_model_headmodel.py
def test_fast_dev_run_selfie_ablation(ablation, subject32, tmp_path):
    extra = ["experiment=selfie_synthetic", "debug=fdr", f"ablation={ablation}"]  # L_cos on dlib's descriptor
    metrics = train(compose_train(selfie_overrides(subject32, tmp_path, extra), output_dir=tmp_path))
    assert {"train/loss", "train/d_loss", "train/l1", "train/mask", "test/psnr"} <= set(metrics)
    weights = compose_train(extra[:1] + extra[2:]).loss.weights
    for term in ("cos", "mrf"):  # a term is computed exactly when its weight is on
        assert (f"train/{term}" in metrics) == (weights[term] > 0)


def test_cos_term_refuses_without_weights(subject32, tmp_path):
    extra = ["experiment=selfie_synthetic", "ablation=full", "debug=fdr", "loss.face_id.network=vggface2"]
    cfg = compose_train(selfie_overrides(subject32, tmp_path, extra), output_dir=tmp_path)
    with pytest.raises(Exception, match="loss.face_id.weights"):
        train(cfg)


def test_train_checkpoint_reenact_and_resume(subject32, tmp_path):
    """Two epochs with validation, a checkpoint that evaluate/reenact load, and a resumed third epoch.

    ``model.generator.size=null``: the generator takes the data's image side (from the subject at attach,
    from the checkpoint's image size when loaded)."""
    from src.models.loading import geometry_scores, load_avatar

    extra = [
        "experiment=selfie_synthetic", "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1",
        "callbacks.rich_progress_bar=null", "+trainer.enable_progress_bar=false", "model.r1.every=2",
        "model.generator.size=null",
    ]  # fmt: skip
    overrides = selfie_overrides(subject32, tmp_path, extra)
    metrics = train(compose_train(overrides, output_dir=tmp_path))
    assert "train/r1" in metrics and metrics["test/psnr"] > 5
    assert list((tmp_path / "images").glob("val_epoch_*.png"))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1  # last.ckpt is the last epoch, improved or not
    assert not list(ckpt.parent.glob(".*.tmp"))
    model, _ = load_avatar(ckpt)
    assert int(model.g_steps) == 2 * 3  # 6 training frames, batch 2, 2 epochs
    assert model.generator.size == 32 and model.hparams.generator["size"] is None
    img = model.predict_frames(torch.tensor([0, 9]))
    assert img.shape == (2, 3, 32, 32) and img.min() >= 0 and img.max() <= 1
    sd = model.state_dict()
    assert not any(k.startswith(("mrf", "face_id_loss")) for k in sd)  # frozen nets stay out
    from src.cli.reenact import run as reenact_run

    for mode, extra_r in (
        ("preset", ["preset=smile", "n_frames=3"]),
        ("orbit", ["n_frames=2", "image_size=64"]),
    ):
        out = tmp_path / f"reenact_{mode}"
        args = [f"ckpt_path={ckpt}", f"mode={mode}", f"out_dir={out}", "progress=false", *extra_r]
        cfg = compose_train(args, output_dir=out, config_name="reenact")
        info = reenact_run(cfg)
        assert (
            Path(info["video"]).stat().st_size > 0
            and len(list((out / "frames").glob("*.png"))) == info["n_frames"]
        )
    assert geometry_scores(model, "test") is None  # no geometry of its own to score
    with pytest.raises(NotImplementedError, match="mesh avatar"):
        model.bake_texture(16)
    resumed = tmp_path / "resumed"  # same data, a new run folder, resumed from the checkpoint
    overrides = [o for o in overrides if not o.startswith("trainer.max_epochs")]
    overrides += ["trainer.max_epochs=3", f"ckpt_path={ckpt}", "test=false"]
    train(compose_train(overrides, output_dir=resumed))
    model2, _ = load_avatar(resumed / "checkpoints" / "last.ckpt")
    assert int(model2.g_steps) == 3 * 3


def test_ablation_multirun_writes_one_comparison_table(subject32, tmp_path):
    """`python train.py -m hparams_search=selfie_ablation` trains each variant, then scores them together."""
    import json
    import subprocess
    import sys

    sweep = tmp_path / "sweep"
    args = selfie_overrides(subject32, tmp_path, [
        "experiment=selfie_synthetic", "hparams_search=selfie_ablation", "loss.weights.cos=0",
        "ablation=no_cos,no_mrf",
        f"hydra.sweep.dir={sweep}", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1", "callbacks.rich_progress_bar=null", "callbacks.heldout_video=null",
        "+trainer.enable_progress_bar=false", "hydra.callbacks.compare.fid=false",
    ])  # fmt: skip
    root = Path(CONF_DIR).parent
    proc = subprocess.run([sys.executable, "train.py", "-m", *args], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((sweep / "comparison" / "comparison.json").read_text())
    assert [r["run"].split()[0] for r in rows] == ["ablation=no_cos", "ablation=no_mrf"]
    # after two steps the averaged generator (half-life 500 images) is still close to its initialisation:
    # the rows must hold finite, in-range scores of both runs, not good ones
    assert all(r["num_frames"] == 2 and 3 < r["psnr"] < 60 and -1 <= r["ssim"] <= 1 for r in rows)
    table = (sweep / "comparison" / "comparison.md").read_text()
    assert table.splitlines()[0].startswith("| run | SSIM↑ | PSNR↑ | LPIPS↓ | FID↓")
    from src.cli.evaluate import run_sweep  # the same table again, from evaluate.py

    cfg = compose_train([f"sweep_dir={sweep}", f"out_dir={tmp_path / 'again'}", "metrics.fid=false"],
                        output_dir=tmp_path / "again", config_name="evaluate")  # fmt: skip
    again = run_sweep(cfg)["runs"]
    assert [round(r["psnr"], 4) for r in again] == [round(r["psnr"], 4) for r in rows]


def test_generator_loss_ignores_padded_pixels(subject32, tmp_path):
    """Whatever the target holds on padded crop pixels (valid = 0), the generator's terms do not change."""
    import hydra

    from src.core.outputs import Batch

    extra = ["experiment=selfie_synthetic", "ablation=no_cos"]
    cfg = compose_train(selfie_overrides(subject32, tmp_path, extra), output_dir=tmp_path)
    dm = hydra.utils.instantiate(cfg.data, _recursive_=False)
    dm.prepare_data()
    model = hydra.utils.instantiate(cfg.model)
    model.attach(dm.subject())
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    b, _, h, w = batch[Batch.IMAGE].shape
    batch[Batch.VALID] = torch.ones(b, 1, h, w)
    batch[Batch.VALID][..., h - 6 :, :] = 0  # the bottom rows were padding
    spoiled = dict(batch)
    spoiled[Batch.IMAGE] = batch[Batch.IMAGE].clone()
    spoiled[Batch.IMAGE][..., h - 6 :, :] = 1.0
    spoiled[Batch.MASK] = batch[Batch.MASK].clone()
    spoiled[Batch.MASK][..., h - 6 :, :] = 1.0
    with torch.no_grad():
        cond = model.conditioning(batch[Batch.INDEX])
        out = model.generator(cond, randomize_noise=False)
        _, terms = model.generator_loss(batch, out, cond, adversarial=False)
        _, terms2 = model.generator_loss(spoiled, out, cond, adversarial=False)
    for k in ("l1", "mask", "mrf"):
        assert torch.allclose(terms[k], terms2[k], atol=1e-6), k
