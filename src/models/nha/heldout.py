"""Fit held-out frames' expression and pose to their landmarks and pixels, the avatar itself frozen.

Only three tensors are optimised (the frames' expressions, rotations and translations); their gradients
come from ``torch.autograd.grad`` with respect to those tensors alone, so the avatar's parameters are
never touched and never change their ``requires_grad``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from src.core.outputs import Batch
from src.utils.io import atomic_write
from src.utils.signals import check_stop

log = logging.getLogger(__name__)

# (expression (B,Ne), rotation (B,3), translation (B,3), rows of the batch) -> (total loss, terms)
LossOfParams = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, slice], tuple[torch.Tensor, dict[str, torch.Tensor]]
]


@dataclass
class HeldoutFit:
    """Settings of the held-out fit (``model.heldout_fit``).

    Attributes:
        steps: passes over the frames (0: keep the given parameters).
        lr: Adam learning rate.
        batch_size: frames per optimisation step.
        weights: loss term -> weight (landmarks and pixels by default).
        resolution: fit at this image side (the frames, masks and cameras scaled down; None: the
            training size). Expression and pose are resolution-free, so a coarse fit serves every size.
        supersample: the renderer's supersampling during the fit (None: the model's).
        tol: early stop when a pass lowers the mean loss by less than this fraction (0: all passes).
        rotation_lr_scale, translation_lr_scale: rotation (radians) and translation (metres) learn at
            ``lr`` times these. One Adam rate for all three moved a translation by up to ``lr`` metres per
            step whatever its gradient (5 mm at 5e-3), and frames wandered off parameters that already fitted;
            rotations need the full rate to correct a degree of tracking error in a few dozen steps.

    The learning rates fall to zero along a cosine over all steps, so the fit settles instead of ending on
    Adam's last noisy step.
    """

    steps: int = 0
    lr: float = 2e-3
    batch_size: int = 8
    weights: dict[str, float] = field(default_factory=lambda: {"landmarks": 1.0, "rgb_l1": 1.0})
    resolution: int | None = None
    supersample: int | None = None
    tol: float = 0.0
    rotation_lr_scale: float = 1.0
    translation_lr_scale: float = 0.1

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> HeldoutFit:
        """From a config mapping (missing keys keep their defaults)."""
        cfg = dict(cfg or {})
        fit = cls()  # the dataclass holds the defaults; the config overrides what it names
        for name, cast in (("steps", int), ("lr", float), ("batch_size", int), ("tol", float),
                           ("rotation_lr_scale", float), ("translation_lr_scale", float)):  # fmt: skip
            if name in cfg:
                setattr(fit, name, cast(cfg[name]))
        for name in ("resolution", "supersample"):  # None (null) stays None
            if cfg.get(name) is not None:
                setattr(fit, name, int(cfg[name]))
        if cfg.get("weights") is not None:
            fit.weights = {k: float(v) for k, v in dict(cfg["weights"]).items()}
        return fit

    def settings(self) -> dict:
        """The settings as plain values (part of the key a stored fit is checked against)."""
        return asdict(self)

    def run(
        self,
        loss_of: LossOfParams,
        expression: torch.Tensor,
        rotation: torch.Tensor,
        translation: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Optimise the start values with Adam (per-tensor rates, cosine decay to zero).

        Args:
            loss_of: the loss of given parameters of the frames in a slice of the batch.
            expression: (N,Ne) start expressions; rotation, translation: (N,3) start poses.

        Returns:
            fitted expression (N,Ne) (clamped to [0,1]), rotation (N,3), translation (N,3), detached.
        """
        params = [t.detach().clone() for t in (expression, rotation, translation)]
        lrs = (self.lr, self.lr * self.rotation_lr_scale, self.lr * self.translation_lr_scale)
        opt = torch.optim.Adam([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)])
        n = expression.shape[0]
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, max(1, self.steps * math.ceil(n / self.batch_size))
        )
        with torch.enable_grad():
            for p in params:
                p.requires_grad_(True)
            last = None
            for _ in range(self.steps):
                check_stop("held-out fit")
                seen = 0.0
                for s in range(0, n, self.batch_size):
                    rows = slice(s, s + self.batch_size)
                    total, _ = loss_of(params[0][rows].clamp(0, 1), params[1][rows], params[2][rows], rows)
                    grads = torch.autograd.grad(total, params, allow_unused=True)
                    for p, g in zip(params, grads):
                        p.grad = g  # None (unused): Adam leaves that tensor alone this step
                    opt.step()
                    sched.step()
                    seen += float(total.detach()) * len(range(n)[rows])
                if last is not None and self.tol > 0 and last - seen < self.tol * abs(last):
                    break
                last = seen
        expr, rot, trans = (p.detach() for p in params)
        return expr.clamp(0, 1), rot, trans


def concat_batches(batches) -> dict[str, torch.Tensor]:
    """One batch holding every frame of ``batches`` (an iterable of batches, e.g. a DataLoader)."""
    parts = list(batches)
    if not parts:
        raise ValueError("no frames to fit: the split is empty")
    keys = [k for k in parts[0] if torch.is_tensor(parts[0][k])]
    out = {k: torch.cat([p[k] for p in parts]) for k in keys}
    if Batch.INDEX not in out:
        raise ValueError(f"batches have no '{Batch.INDEX}' key")
    return out


def scaled_batch(batch: Mapping[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """A batch at another image size: images and weights area-averaged, labels nearest, landmarks scaled.

    Args:
        batch: dataset items (B,C,H,W) images/masks, (B,H,W) segmentation, (B,L,2) landmarks (pixels).
        size: (H', W').
    """
    out = dict(batch)
    h, w = batch[Batch.IMAGE].shape[-2:]
    if (h, w) == tuple(size):
        return out
    for k, v in batch.items():
        if not torch.is_tensor(v):
            continue
        if k == Batch.SEGMENTATION and v.dim() == 3:
            out[k] = F.interpolate(v[:, None].float(), size=size, mode="nearest")[:, 0].to(v.dtype)
        elif v.dim() == 4 and tuple(v.shape[-2:]) == (h, w):
            out[k] = F.interpolate(v.float(), size=size, mode="area").to(v.dtype)
        elif k.startswith("landmarks") and v.dim() == 3 and v.shape[-1] == 2:
            out[k] = v * v.new_tensor([size[1] / w, size[0] / h])
    return out


def fit_size(image_size: tuple[int, int], resolution: int | None) -> tuple[int, int]:
    """(H', W') with the longer side ``resolution`` (never larger than ``image_size``)."""
    h, w = image_size
    if resolution is None or resolution >= max(h, w):
        return (h, w)
    f = resolution / max(h, w)
    return (max(1, round(h * f)), max(1, round(w * f)))


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (what a stored fit is tied to: the checkpoint it was fitted for)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class StoredFit:
    """Held-out fits stored beside a checkpoint: ``<ckpt stem>.heldout_<split>.pt``, reused by the test loop,
    evaluate.py and reenact.py while checkpoint, frames and fit settings are unchanged.

    Args:
        ckpt: the checkpoint the avatar was loaded from (None: nothing is stored).
    """

    def __init__(self, ckpt: str | Path | None) -> None:
        self.ckpt = None if ckpt is None else Path(ckpt)
        self._digest: str | None = None

    def path(self, split: str) -> Path | None:
        if self.ckpt is None or not self.ckpt.is_file():
            return None
        return self.ckpt.with_name(f"{self.ckpt.stem}.heldout_{split}.pt")

    def key(self, index: torch.Tensor, settings: dict, start: dict[str, torch.Tensor] | None = None) -> dict:
        """What a stored fit is valid for: the checkpoint's bytes, the frames, the fit settings and the
        parameters the fit starts from (``start``: from the frames' tracking, which re-tracking changes)."""
        if self._digest is None:
            self._digest = file_digest(self.ckpt)
        key = {"checkpoint_sha256": self._digest, "frames": [int(i) for i in index], "settings": settings}
        if start is not None:
            h = hashlib.sha256()
            for name in sorted(start):
                h.update(name.encode())
                h.update(start[name].detach().cpu().to(torch.float32).numpy().round(6).tobytes())
            key["start_sha256"] = h.hexdigest()
        return key

    def load(self, split: str, key: dict) -> dict[str, torch.Tensor] | None:
        """The stored fit when its key matches, else None (a stale or damaged file is ignored: refitted)."""
        path = self.path(split)
        if path is None or not path.is_file():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  (a damaged file: refit and overwrite)
            log.warning("ignoring unreadable held-out fit %s (%s); fitting again", path, e)
            return None
        if json.dumps(data.get("key"), sort_keys=True) != json.dumps(key, sort_keys=True):
            log.info("stored held-out fit %s is for another checkpoint or settings; fitting again", path)
            return None
        return data["params"]

    def save(self, split: str, key: dict, params: dict[str, torch.Tensor]) -> None:
        path = self.path(split)
        if path is None:
            return
        data = {"key": key, "params": {k: v.detach().cpu() for k, v in params.items()}}
        atomic_write(path, lambda tmp: torch.save(data, tmp))
        log.info("stored the held-out fit of %d %s frames in %s", len(key["frames"]), split, path)
