"""Image-avatar loss terms: ID-MRF, face identity (L_cos), adversarial + R1, mask MAE."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import math
import pickle

import numpy as np
import pytest
import torch
import torchvision
from skimage import data, transform
from torch import nn

from src.losses import (
    FaceIdentityLoss,
    IDMRFLoss,
    d_logistic_loss,
    g_nonsaturating_loss,
    idmrf_distance,
    load_resnet50_face_weights,
    mask_mae,
    r1_penalty,
)
from src.losses.face_id import ResNet50FaceNet
from src.pretrained.weights import WeightsUnavailableError


def image(name, size=32):
    img = getattr(data, name)()[:300, 100:400] if name == "astronaut" else getattr(data, name)()
    img = transform.resize(img, (size, size), anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(img).permute(2, 0, 1)[None]


# --------------------------------------------------------------------------------------------- ID-MRF


def idmrf_reference(gen, tgt, bandwidth=0.5, eps=1e-5):
    """Per-location loops over the definition (float64 Python numbers), one value per sample."""
    out = []
    for g_map, t_map in zip(gen.double(), tgt.double()):
        c = g_map.shape[0]
        mu = [t_map[k].mean().item() for k in range(c)]

        def vectors(m, mu=mu, c=c):
            vecs = []
            for y in range(m.shape[1]):
                for x in range(m.shape[2]):
                    v = [m[k, y, x].item() - mu[k] for k in range(c)]
                    norm = math.sqrt(sum(a * a for a in v))
                    vecs.append([a / norm for a in v])
            return vecs

        gv, tv = vectors(g_map), vectors(t_map)
        best = [0.0] * len(tv)
        for gi in gv:
            d = [1.0 - sum(a * b for a, b in zip(gi, tj)) for tj in tv]
            dmin = min(d)
            e = [math.exp((1.0 - dj / (dmin + eps)) / bandwidth) for dj in d]
            total = sum(e)
            for j, ej in enumerate(e):
                best[j] = max(best[j], ej / total)
        out.append(-math.log(sum(best) / len(best)))
    return torch.tensor(out, dtype=torch.float64)


def test_idmrf_distance_matches_loop_reference():
    torch.manual_seed(0)
    gen, tgt = torch.randn(2, 5, 3, 4, dtype=torch.float64), torch.randn(2, 5, 3, 4, dtype=torch.float64)
    ours = idmrf_distance(gen, tgt)
    assert ours.shape == (2,)
    torch.testing.assert_close(ours, idmrf_reference(gen, tgt), atol=1e-5, rtol=1e-5)
    # other bandwidth, different spatial sizes, float32
    gen2 = torch.randn(2, 5, 2, 3)
    torch.testing.assert_close(
        idmrf_distance(gen2, tgt.float(), bandwidth=0.2).double(),
        idmrf_reference(gen2, tgt, bandwidth=0.2),
        atol=1e-5,
        rtol=1e-5,
    )


def test_idmrf_distance_identity_unrelated_and_gradient():
    torch.manual_seed(1)
    tgt = torch.randn(2, 16, 6, 6)
    same = idmrf_distance(tgt.clone(), tgt)
    assert same.abs().max() < 1e-4
    noisy = idmrf_distance(tgt + 0.3 * torch.randn_like(tgt), tgt)
    unrelated = idmrf_distance(torch.randn(2, 16, 6, 6), tgt)
    assert (same < noisy).all() and (noisy < unrelated).all()
    assert (unrelated <= math.log(36) + 1e-5).all()
    gen = torch.randn(2, 16, 6, 6, requires_grad=True)
    idmrf_distance(gen, tgt).sum().backward()
    assert torch.isfinite(gen.grad).all() and gen.grad.abs().sum() > 0


def test_idmrf_max_patches():
    torch.manual_seed(2)
    gen, tgt = torch.randn(2, 8, 10, 10), torch.randn(2, 8, 10, 10)
    torch.testing.assert_close(idmrf_distance(gen, tgt, max_patches=100), idmrf_distance(gen, tgt))
    sub = idmrf_distance(gen, tgt, max_patches=20, generator=torch.Generator().manual_seed(0))
    assert sub.shape == (2,) and torch.isfinite(sub).all() and (sub <= math.log(20) + 1e-5).all()
    assert idmrf_distance(tgt.clone(), tgt, max_patches=20).abs().max() < 1e-4  # same subset on both sides


@pytest.fixture(scope="module")
def idmrf_loss():
    try:
        return IDMRFLoss()
    except WeightsUnavailableError as err:
        pytest.skip(f"no real VGG16 weights here: {err}")


def test_idmrf_loss_real_vgg16(idmrf_loss):
    assert idmrf_loss.layers == ("relu3_2", "relu4_2") and idmrf_loss.layer_weights == (1.0, 1.0)
    a, b = image("astronaut"), image("chelsea")
    pred = torch.cat([a, a]).requires_grad_(True)
    target = torch.cat([a, b])
    per = idmrf_loss(pred, target, reduction="none")
    assert per.shape == (2,) and per[0] < 1e-3 < per[1]
    loss = idmrf_loss(pred, target)
    assert loss.shape == () and torch.isclose(loss, per.mean())
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[1].abs().sum() > 0
    mask = torch.zeros(2, 1, 32, 32)
    assert idmrf_loss(pred, target, mask=mask).abs() < 1e-4  # both images masked to black


def test_idmrf_loss_hidden_frozen_and_shared_net(idmrf_loss):
    parent = nn.Module()
    parent.head = nn.Linear(2, 2)
    parent.mrf = idmrf_loss
    parent.train()
    assert len(idmrf_loss.state_dict()) == 0 and len(list(idmrf_loss.parameters())) == 0
    assert set(parent.state_dict()) == {"head.weight", "head.bias"}
    assert not idmrf_loss.training and not idmrf_loss.net.training
    parent.double()
    assert idmrf_loss.net.features[0].weight.dtype == torch.float64
    parent.float()
    shared = IDMRFLoss(layers={"relu4_2": 2.0}, net=idmrf_loss.net)
    assert shared.net is idmrf_loss.net and shared.layer_weights == (2.0,)
    with pytest.raises(ValueError, match="relu5_1"):
        IDMRFLoss(layers={"relu5_1": 1.0}, net=idmrf_loss.net)


# ------------------------------------------------------------------------------------------- identity


@pytest.fixture(scope="module")
def identity_files(tmp_path_factory):
    """The same random resnet50 weights as a torchvision torch file and as a VGGFace2-style pickle."""
    root = tmp_path_factory.mktemp("identity")
    torch.manual_seed(3)
    net = torchvision.models.resnet50(num_classes=8631)
    for m in net.modules():  # non-trivial running statistics, as in trained weights
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    sd = net.state_dict()
    pth = root / "resnet50_faces.pth"
    torch.save(sd, pth)
    pkl = root / "resnet50_ft_weight.pkl"
    arrays = {k: v.numpy() for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    with open(pkl, "wb") as f:
        pickle.dump(arrays, f, protocol=2)
    return {"pth": pth, "pkl": pkl, "sd": sd}


def test_face_id_loss_vggface2_refuses_without_weights(tmp_path):
    for weights in (None, tmp_path / "missing.pkl"):
        with pytest.raises(WeightsUnavailableError, match=r"loss\.face_id\.weights") as err:
            FaceIdentityLoss("vggface2", weights)
        assert "\n" not in str(err.value)


def test_load_resnet50_face_weights_formats_and_errors(identity_files, tmp_path):
    ref = {k: v for k, v in identity_files["sd"].items() if not k.startswith("fc.")}
    ref = {k: v for k, v in ref.items() if not k.endswith("num_batches_tracked")}
    for key in ("pth", "pkl"):
        sd = load_resnet50_face_weights(identity_files[key])
        assert sd.keys() == ref.keys() and all(torch.equal(sd[k], ref[k]) for k in ref)
    nested = tmp_path / "nested.pt"  # Lightning/DataParallel style: {"state_dict": {"module.*": ...}}
    torch.save({"state_dict": {f"module.{k}": v for k, v in list(ref.items())[:5]}}, nested)
    first_missing = r"nested\.pt.*missing keys \['layer1\.0\.conv1\.weight'"
    with pytest.raises(WeightsUnavailableError, match=first_missing) as err:
        load_resnet50_face_weights(nested)  # prefixes stripped: only the left-out keys are missing
    assert "\n" not in str(err.value) and "unknown keys []" in str(err.value)
    bad = tmp_path / "bad.pkl"
    with open(bad, "wb") as f:
        pickle.dump({"features.0.weight": np.zeros(3, np.float32)}, f)
    with pytest.raises(WeightsUnavailableError, match=r"bad\.pkl.*missing keys \['conv1\.weight'"):
        load_resnet50_face_weights(bad)


def test_resnet50_face_net_preprocessing_and_arch():
    net = ResNet50FaceNet()  # vggface2: caffe strides, BGR 0..255 minus mean
    assert net.arch == "caffe" and net.net.maxpool.ceil_mode and net.net.layer3[0].conv1.stride == (2, 2)
    assert net.net.layer3[0].conv2.stride == (1, 1) and len(net.state_dict()) == 318  # 320 - fc.*
    x = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    y = net.normalise(x)
    assert y.shape == (1, 3, 224, 224)
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor([-91.4953, 127.5 - 103.8827, 255 - 131.0912]))
    tv = ResNet50FaceNet("imagenet", input_size=64)
    assert tv.arch == "torchvision" and tv.net.layer3[0].conv2.stride == (2, 2)
    expected = (torch.tensor([1.0, 0.5, 0.0]) - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225]
    )
    y = tv.normalise(x)
    assert y.shape == (1, 3, 64, 64)
    torch.testing.assert_close(y[0, :, 0, 0], expected)
    assert net(torch.rand(1, 3, 32, 32)).shape == (1, 2048)


def test_face_id_loss_vggface2_with_both_formats(identity_files):
    a, b = image("astronaut", 64), image("chelsea", 64)
    losses = {
        key: FaceIdentityLoss("vggface2", identity_files[key], input_size=112) for key in ("pth", "pkl")
    }
    values = {}
    for key, loss in losses.items():
        assert len(loss.state_dict()) == 0 and len(list(loss.parameters())) == 0
        assert not loss.net.training and not any(p.requires_grad for p in loss.net.parameters())
        assert loss(a, a.clone()).abs() < 1e-5
        pred = torch.cat([a, b]).requires_grad_(True)
        value = loss(pred, torch.cat([b, a]))
        assert value.shape == () and 0.0 < value <= 2.0
        value.backward()
        assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
        values[key] = value.detach()
    torch.testing.assert_close(values["pth"], values["pkl"])
    masked = losses["pkl"](torch.cat([a, b]), torch.cat([b, a]), mask=torch.zeros(2, 1, 64, 64))
    assert masked.abs() < 1e-5


# ---------------------------------------------------------------------------------------- adversarial


def test_adversarial_losses_closed_form():
    fake = torch.tensor([-2.0, 0.0, 3.0])
    real = torch.tensor([[1.0], [-0.5]])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    assert torch.isclose(g_nonsaturating_loss(fake), torch.tensor((sp(2.0) + sp(0.0) + sp(-3.0)) / 3))
    expected = (sp(-1.0) + sp(0.5)) / 2 + (sp(-2.0) + sp(0.0) + sp(3.0)) / 3
    assert torch.isclose(d_logistic_loss(real, fake), torch.tensor(expected))
    assert torch.isclose(g_nonsaturating_loss(torch.zeros(4)), torch.tensor(math.log(2.0)))


def test_r1_linear_discriminator_exact():
    torch.manual_seed(4)
    disc = nn.Linear(6, 1)
    x = torch.randn(5, 6, requires_grad=True)
    penalty = r1_penalty(disc(x), x)
    w = disc.weight.detach()
    torch.testing.assert_close(penalty, w.pow(2).sum())
    penalty.backward()  # create_graph: d||w||^2/dw = 2w
    torch.testing.assert_close(disc.weight.grad, 2 * w)
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(disc(x.detach()), x.detach())


def test_r1_conv_discriminator_matches_per_sample_loop():
    torch.manual_seed(5)
    disc = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3), nn.Flatten())
    x = torch.randn(3, 3, 9, 9, requires_grad=True)
    ours = r1_penalty(disc(x), x)
    norms = []
    for i in range(3):
        xi = x[i : i + 1].detach().requires_grad_(True)
        (g,) = torch.autograd.grad(disc(xi).sum(), xi)
        norms.append(g.pow(2).sum())
    torch.testing.assert_close(ours, torch.stack(norms).mean())
    ours.backward()
    # the penalty reaches D's weights (the last bias does not change d logits / d x)
    assert all(disc[i].weight.grad is not None and disc[i].weight.grad.abs().sum() > 0 for i in (0, 2))


def test_mask_mae():
    pred = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.25]]]])
    assert torch.isclose(mask_mae(pred, target), torch.tensor(1.5 / 4))
    with pytest.raises(ValueError):
        mask_mae(pred, target[..., :1])
