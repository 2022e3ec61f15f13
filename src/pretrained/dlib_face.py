"""dlib's face descriptor network (``dlib_face_recognition_resnet_model_v1.dat``) in PyTorch.

The network is dlib's ``anet_type`` from its face-recognition example (a 29-conv ResNet on 150x150 RGB
face chips, 128-D output; same-person pairs lie under 0.6 in Euclidean distance). The weights come only
from the ``.dat`` file, parsed by :mod:`src.pretrained.dlib_reader`; the layer list read from the file is
checked against :func:`architecture` (layer kinds, filter counts, kernel sizes, strides, paddings, and the
version pattern that encodes where the tag/skip layers sit), so a different file is refused, not guessed.

Layer semantics as dlib computes them (CPU): ``con`` is a cross-correlation with bias, padding
``k//2`` at stride 1 and 0 otherwise; ``affine`` is a per-channel ``x*gamma + beta`` (batch norm folded at
training time); ``max_pool``/``avg_pool`` have no padding; ``add_prev`` adds two tensors of possibly
different sizes into one of the larger size (each missing entry counts as 0: channels and bottom/right
border); ``avg_pool_everything`` is a spatial mean; ``fc_no_bias`` multiplies by a (in, out) matrix.
Input: ``(pixel - avg) / 256`` per RGB channel, pixels in 0..255.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from src.pretrained.dlib_reader import DlibLayer, DlibNet, read_dlib_net
from src.pretrained.face_align import align_face_chips
from src.pretrained.weights import _SOURCES, WeightsUnavailableError

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150
CHIP_PADDING = 0.25
SAME_PERSON_THRESHOLD = 0.6  # dlib's distance threshold (loss_metric dist_thresh stored in the file)
DESCRIPTOR_DIM = 128

Op = tuple  # ("con", filters, kernel, stride) | ("affine",) | ("relu",) | ("max_pool", k, s) | ...


def _block(n: int, stride: int) -> list[Op]:
    return [("con", n, 3, stride), ("affine",), ("relu",), ("con", n, 3, 1), ("affine",)]


def _ares(n: int) -> list[Op]:
    return [("tag", 1), *_block(n, 1), ("add_prev", 1), ("relu",)]


def _ares_down(n: int) -> list[Op]:
    down = [("tag", 2), ("skip", 1), ("avg_pool", 2, 2), ("add_prev", 2)]
    return [("tag", 1), *_block(n, 2), *down, ("relu",)]


def architecture() -> list[Op]:
    """dlib's face descriptor ResNet as ops from input to output (tags, skips and add_prev included)."""
    ops: list[Op] = [("con", 32, 7, 2), ("affine",), ("relu",), ("max_pool", 3, 2)]
    ops += _ares(32) * 3
    ops += _ares_down(64) + _ares(64) * 3
    ops += _ares_down(128) + _ares(128) * 2
    ops += _ares_down(256) + _ares(256) * 2
    ops += _ares_down(256)
    ops += [("avg_pool", 0, 1), ("fc", DESCRIPTOR_DIM)]
    return ops


def find_model_file() -> Path:
    """The ``.dat`` shipped by the installed ``face_recognition_models`` package.

    Raises:
        WeightsUnavailableError: the package or its file is missing (says how to install it).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise WeightsUnavailableError(
            "dlib's face recognition weights need face_recognition_models: pip install --no-deps "
            "face_recognition_models==0.3.0 (pyproject.toml's weights extra; make install does it)"
        )
    path = Path(spec.origin).parent / "models" / MODEL_FILE
    if not path.is_file():
        raise WeightsUnavailableError(f"{path} is missing: reinstall face_recognition_models==0.3.0")
    return path


def _check(layer: DlibLayer, op: Op, cin: int, origin: str) -> None:
    """Refuse a parsed layer that is not the expected op (kind, sizes, strides, paddings, shapes)."""
    kind = op[0]
    f = layer.fields
    bad = layer.kind != kind
    if kind == "con":
        n, k, s = op[1:]
        pad = k // 2 if s == 1 else 0
        keys = ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        bad = bad or tuple(f[key] for key in keys) != (n, k, k, s, s, pad, pad) or not f["use_bias"]
        bad = bad or layer.tensors["params"].size != n * cin * k * k + n
    elif kind in ("max_pool", "avg_pool"):
        k, s = op[1:]
        bad = bad or (f["nr"], f["nc"], f["stride_y"], f["stride_x"], f["padding_y"], f["padding_x"]) != (
            k, k, s, s, 0, 0,
        )  # fmt: skip
    elif kind == "affine":
        bad = bad or f["mode"] != 0 or layer.tensors["params"].size != 2 * cin
    elif kind == "fc":
        bad = bad or (f["num_outputs"], f["num_inputs"], f["bias_mode"]) != (op[1], cin, 1)
    if bad:
        raise WeightsUnavailableError(
            f"{origin}: layer {layer.name} {dict(f)} does not match the expected {op} (input channels "
            f"{cin}); not dlib's {MODEL_FILE}"
        )


class DlibFaceNet(nn.Module):
    """dlib's face descriptor ResNet: (N,3,150,150) RGB face chips in [0,1] -> (N,128) descriptors.

    Build it with :meth:`from_file` (real weights only). Chips must be aligned the way dlib does it
    (:func:`src.pretrained.face_align.align_face_chips`). The descriptors are not normalised; dlib
    compares them by Euclidean distance (same person below 0.6).

    Args:
        net: a parsed network (:func:`src.pretrained.dlib_reader.read_dlib_net`).
        origin: where it came from (error messages and provenance).
    """

    def __init__(self, net: DlibNet, origin: str = "<parsed>") -> None:
        super().__init__()
        ops = architecture()
        computational = [op for op in ops if op[0] not in ("tag", "skip")]
        if len(net.layers) != len(computational):
            raise WeightsUnavailableError(
                f"{origin}: {len(net.layers)} layers, expected {len(computational)}; not dlib's {MODEL_FILE}"
            )
        expected_versions = [1 if op[0] in ("tag", "skip") else 2 for op in reversed(ops)]
        if net.versions[:-1] != expected_versions[:-1]:
            raise WeightsUnavailableError(f"{origin}: layer graph differs from dlib's face descriptor net")
        inp = net.input.fields
        if (inp["nr"], inp["nc"]) != (CHIP_SIZE, CHIP_SIZE):
            raise WeightsUnavailableError(f"{origin}: input {inp['nr']}x{inp['nc']}, expected 150x150")
        mean = torch.tensor([inp["avg_red"], inp["avg_green"], inp["avg_blue"]], dtype=torch.float32)
        self.register_buffer("mean", mean.view(1, 3, 1, 1))
        self.convs = nn.ModuleList()
        self.affines = nn.ParameterList()
        self.ops: list[tuple] = []
        layers = iter(net.layers)
        cin = 3
        for op in ops:
            if op[0] in ("tag", "skip"):
                self.ops.append(op)
                continue
            layer = next(layers)
            _check(layer, op, cin, origin)
            params = torch.from_numpy(layer.tensors.get("params", np.zeros(0, np.float32)).ravel().copy())
            if op[0] == "con":
                n, k, s = op[1:]
                conv = nn.Conv2d(cin, n, k, stride=s, padding=k // 2 if s == 1 else 0)
                conv.weight.data.copy_(params[: n * cin * k * k].view(n, cin, k, k))
                conv.bias.data.copy_(params[n * cin * k * k :])
                self.ops.append(("con", len(self.convs)))
                self.convs.append(conv)
                cin = n
            elif op[0] == "affine":
                self.ops.append(("affine", len(self.affines)))
                self.affines.append(nn.Parameter(params.view(2, 1, cin, 1, 1)))  # gamma, beta
            elif op[0] == "fc":
                self.fc = nn.Parameter(params.view(cin, op[1]).t().contiguous())  # (out, in)
                self.ops.append(("fc",))
            else:
                self.ops.append(op)
        self.loss_fields = dict(net.loss.fields)
        self.origin = origin
        self.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> DlibFaceNet:
        """Load from ``path`` or, by default, the installed ``face_recognition_models`` file.

        Raises:
            WeightsUnavailableError: no file, or a file that is not dlib's face descriptor network.
        """
        p = find_model_file() if path is None else Path(path).expanduser()
        net = cls(read_dlib_net(p), str(p))
        _SOURCES["dlib_face"] = f"dlib face descriptor ResNet from {p}"
        return net

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        """(N,3,150,150) RGB chips in [0,1] -> (N,128) descriptors."""
        if chips.ndim != 4 or chips.shape[1:] != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"expected (N,3,150,150) face chips, got {tuple(chips.shape)}; align them first")
        x = (chips * 255.0 - self.mean) / 256.0
        tags: dict[int, torch.Tensor] = {}
        for op in self.ops:
            kind = op[0]
            if kind == "con":
                x = self.convs[op[1]](x)
            elif kind == "affine":
                gb = self.affines[op[1]]
                x = x * gb[0] + gb[1]
            elif kind == "relu":
                x = F.relu(x)
            elif kind == "max_pool":
                x = F.max_pool2d(x, op[1], op[2])
            elif kind == "avg_pool":
                x = x.mean(dim=(2, 3)) if op[1] == 0 else F.avg_pool2d(x, op[1], op[2])
            elif kind == "tag":
                tags[op[1]] = x
            elif kind == "skip":
                x = tags[op[1]]
            elif kind == "add_prev":
                x = add_padded(x, tags[op[1]])
            elif kind == "fc":
                x = x @ self.fc.t()
        return x


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``tt::add`` of two (N,C,H,W) tensors of different sizes: zero-pad both to the larger size.

    Args:
        a: (N,Ca,Ha,Wa).
        b: (N,Cb,Hb,Wb).

    Returns:
        (N,max C,max H,max W); missing channels/rows/columns (at the end) count as 0.
    """
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class DlibFaceEmbedder(nn.Module):
    """Descriptors of faces in whole images: (N,3,H,W) in [0,1] (+ landmarks) -> (N,128).

    With landmarks the chips are aligned like dlib's ``get_face_chip(img, shape, 150, 0.25)``; the
    landmarks follow the project's convention (pixel (x, y) with the top-left pixel's centre at (0.5, 0.5),
    as written by :mod:`src.preprocess.landmarks`), dlib's has pixel centres at integers: 0.5 is
    subtracted. Without landmarks the chip is the centred square of side ``crop`` x min(H, W), resized.

    Args:
        weights: dlib ``.dat`` file; None = the installed ``face_recognition_models`` file.
        crop: side of the centred square used without landmarks, as a fraction of min(H, W).
    """

    def __init__(self, weights: str | Path | None = None, crop: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < float(crop) <= 1.0:
            raise ValueError(f"crop must be in (0, 1], got {crop}")
        self.net = DlibFaceNet.from_file(weights)
        self.crop = float(crop)

    def chips(self, images: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """(N,3,150,150) chips: dlib alignment on (N,68|5,2) ``landmarks``, else the fixed crop.

        Rows of ``landmarks`` with a non-finite value (no face found) also get the fixed crop.
        """
        h, w = images.shape[-2:]
        side = max(1, round(self.crop * min(h, w)))
        top, left = (h - side) // 2, (w - side) // 2
        x = images[..., top : top + side, left : left + side]
        size = (CHIP_SIZE, CHIP_SIZE)
        if landmarks is None:
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        lm = landmarks.to(device=images.device, dtype=torch.float32) - 0.5
        ok = torch.isfinite(lm.reshape(lm.shape[0], -1)).all(dim=1)
        if bool(ok.all()):
            return align_face_chips(images, lm, CHIP_SIZE, CHIP_PADDING)
        out = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        if bool(ok.any()):
            out = out.index_put(
                (ok.nonzero()[:, 0],), align_face_chips(images[ok], lm[ok], CHIP_SIZE, CHIP_PADDING)
            )
        return out

    def forward(self, images: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """(N,3,H,W) RGB in [0,1], optional (N,68|5,2) landmarks -> (N,128) descriptors."""
        return self.net(self.chips(images, landmarks))
