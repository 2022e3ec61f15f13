"""Reader of dlib's binary DNN serialisation (enough for ``dlib_face_recognition_resnet_model_v1.dat``).

Format facts (from dlib's ``serialize.h``, ``dnn/tensor.h``, ``dnn/core.h``, ``dnn/layers.h``,
``dnn/input.h``, ``dnn/loss.h``):

* integer: one control byte (bit 7 = negative, low 4 bits = byte count n), then n little-endian bytes;
* float/double: two integers, mantissa (int64) and exponent (int16); value = mantissa * 2**exponent;
* string: an integer length, then the bytes; bool: the character ``'1'`` or ``'0'``;
* tensor (version 2): version, num_samples, k, nr, nc, then num_samples*k*nr*nc raw little-endian
  float32 (version 1: each value as a dlib float); alias_tensor: version 1 and the four sizes;
* ``add_loss_layer``: version, the loss details, the subnetwork; ``add_layer`` serialises its
  subnetwork *first* (version, subnetwork, details, three bools, x_grad, cached_output, params_grad),
  so a file is: every layer's version field from the output down to the input layer, the input layer,
  then each computational layer's details from the input up. Tag and skip layers are a version field
  (1) and nothing else: the graph (which tag an ``add_prev`` reads) is not stored, it is the C++ type.

This module reads the stream into :class:`DlibNet` (loss, input layer, the version list, the
computational layers in input-to-output order) and nothing else; the network is built by
:mod:`src.pretrained.dlib_face`, which checks the parsed layers against the architecture it expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.pretrained.weights import WeightsUnavailableError


class DlibFormatError(WeightsUnavailableError):
    """The file is not a dlib DNN in the expected serialisation."""


@dataclass
class DlibLayer:
    """One computational layer: dlib's name (with its version suffix), scalar fields and tensors."""

    name: str
    fields: dict[str, float | int] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """Layer kind without dlib's version suffix: con, affine, relu, max_pool, avg_pool, add_prev, fc."""
        base = self.name.rstrip("0123456789")
        return base[:-1] if base.endswith("_") else base


@dataclass
class DlibNet:
    """A parsed dlib network: loss, input layer, layer version list (output first), computational layers."""

    loss: DlibLayer
    input: DlibLayer
    versions: list[int]
    layers: list[DlibLayer]


class DlibStream:
    """Cursor over dlib-serialised bytes.

    Args:
        data: the file contents.
        origin: name used in error messages.
    """

    def __init__(self, data: bytes, origin: str = "<bytes>") -> None:
        self.data, self.pos, self.origin = data, 0, origin

    def fail(self, what: str) -> DlibFormatError:
        """An error naming the file, the byte offset and what was expected."""
        return DlibFormatError(f"{self.origin}: byte {self.pos}: {what} (not a dlib DNN file of this kind?)")

    def take(self, n: int) -> bytes:
        """The next n raw bytes."""
        if self.pos + n > len(self.data):
            raise self.fail(f"unexpected end of file reading {n} bytes")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        """A dlib integer (control byte + little-endian magnitude)."""
        ctrl = self.take(1)[0]
        if ctrl & 0x70:
            raise self.fail(f"bad integer control byte 0x{ctrl:02x}")
        n = ctrl & 0x0F
        if n > 8:
            raise self.fail(f"integer of {n} bytes")
        value = int.from_bytes(self.take(n), "little") if n else 0
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        """A dlib float/double: mantissa * 2**exponent."""
        mantissa = self.int()
        exponent = self.int()
        return float(np.ldexp(np.float64(mantissa), exponent))

    def string(self) -> str:
        """A dlib string (length + bytes)."""
        n = self.int()
        if n < 0 or n > 1 << 16:
            raise self.fail(f"string length {n}")
        return self.take(n).decode("latin-1")

    def bool(self) -> bool:
        """A dlib bool: the character '1' or '0'."""
        ch = self.take(1)
        if ch not in (b"0", b"1"):
            raise self.fail(f"bool byte {ch!r}")
        return ch == b"1"

    def tensor(self) -> np.ndarray:
        """A resizable_tensor as a float32 array of shape (num_samples, k, nr, nc)."""
        version = self.int()
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0:
            raise self.fail(f"tensor shape {shape}")
        size = int(np.prod(shape))
        if version == 2:
            arr = np.frombuffer(self.take(4 * size), dtype="<f4").astype(np.float32)
        elif version == 1:
            arr = np.array([self.float() for _ in range(size)], dtype=np.float32)
        else:
            raise self.fail(f"tensor version {version}")
        return arr.reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        """An alias_tensor: its (num_samples, k, nr, nc)."""
        if (v := self.int()) != 1:
            raise self.fail(f"alias_tensor version {v}")
        return tuple(self.int() for _ in range(4))

    def peek_string(self, prefix: bytes) -> bool:
        """Whether a string starting with ``prefix`` comes next (without consuming it)."""
        save = self.pos
        try:
            n = self.int()
            return 0 < n < 256 and self.data[self.pos : self.pos + len(prefix)] == prefix
        except DlibFormatError:
            return False
        finally:
            self.pos = save


def _read_details(s: DlibStream) -> DlibLayer:
    """One computational layer's details (the part dlib's ``serialize(layer_details)`` writes)."""
    name = s.string()
    layer = DlibLayer(name)
    f, t = layer.fields, layer.tensors
    if name in ("con_4", "con_5"):
        t["params"] = s.tensor()
        f["num_filters"] = s.int()
        for key in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"):
            f[key] = s.int()
        f["filters"], f["biases"] = s.alias(), s.alias()
        for key in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
            f[key] = s.float()
        f["use_bias"] = s.bool() if name == "con_5" else True
    elif name == "affine_":
        t["params"] = s.tensor()
        f["gamma"], f["beta"] = s.alias(), s.alias()
        f["mode"] = s.int()
    elif name in ("max_pool_2", "avg_pool_2"):
        for key in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"):
            f[key] = s.int()
    elif name == "fc_2":
        f["num_outputs"], f["num_inputs"] = s.int(), s.int()
        t["params"] = s.tensor()
        f["weights"], f["biases"] = s.alias(), s.alias()
        f["bias_mode"] = s.int()
        for key in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
            f[key] = s.float()
    elif name not in ("relu_", "add_prev_"):
        raise s.fail(f"unsupported layer {name!r}")
    return layer


def _read_input(s: DlibStream) -> DlibLayer:
    name = s.string()
    if name != "input_rgb_image_sized":
        raise s.fail(f"input layer {name!r}, expected input_rgb_image_sized")
    layer = DlibLayer(name)
    for key in ("avg_red", "avg_green", "avg_blue"):
        layer.fields[key] = s.float()
    layer.fields["nr"], layer.fields["nc"] = s.int(), s.int()
    return layer


def _read_loss(s: DlibStream) -> DlibLayer:
    name = s.string()
    layer = DlibLayer(name)
    if name == "loss_metric_2":
        layer.fields["margin"], layer.fields["dist_thresh"] = s.float(), s.float()
    elif name == "loss_metric_":
        layer.fields["margin"], layer.fields["dist_thresh"] = 0.1, 0.75  # dlib's hard-coded old values
    else:
        raise s.fail(f"loss {name!r}, expected loss_metric_2")
    return layer


def parse_dlib_net(data: bytes, origin: str = "<bytes>") -> DlibNet:
    """Parse a serialised ``loss_metric`` network over ``input_rgb_image_sized``.

    Args:
        data: the file contents.
        origin: file name for error messages.

    Returns:
        The parsed :class:`DlibNet`; every byte of ``data`` is consumed.

    Raises:
        DlibFormatError: any deviation from the format (with the byte offset).
    """
    s = DlibStream(data, origin)
    if (v := s.int()) != 1:
        raise s.fail(f"add_loss_layer version {v}, expected 1")
    loss = _read_loss(s)
    versions: list[int] = []
    while not s.peek_string(b"input_"):
        v = s.int()
        if v not in (1, 2, 3) or len(versions) > 10000:
            raise s.fail(f"layer version {v}")
        versions.append(v)
    if not versions or versions[-1] not in (2, 3):
        raise s.fail("no add_layer directly over the input layer")
    inp = _read_input(s)
    layers = []
    for i, v in enumerate(reversed(versions)):
        if i > 0 and v == 1:  # tag/skip layer: nothing but its version, already read
            continue
        layers.append(_read_details(s))
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, output getters disabled
            s.bool()
        s.tensor(), s.tensor()  # x_grad, cached_output (empty in a cleaned net)
        if i == 0:
            s.tensor()  # grad_final
            if v == 3:
                s.int()  # _sample_expansion_factor
        elif v == 2:
            s.tensor()  # params_grad
    if s.pos != len(data):
        raise s.fail(f"{len(data) - s.pos} trailing bytes")
    return DlibNet(loss, inp, versions, layers)


def read_dlib_net(path: str | Path) -> DlibNet:
    """Read and parse a dlib DNN file (see :func:`parse_dlib_net`)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsUnavailableError(f"dlib network file not found: {p}")
    return parse_dlib_net(p.read_bytes(), str(p))
