"""One object that accumulates all image metrics (PSNR, SSIM, LPIPS, FID, CSIM), unmasked and masked.

Definitions (``pred``/``target`` (B,3,H,W) are clamped to [0,1]; ``mask`` (B,1,H,W) is the ground-truth
foreground mask in [0,1], binary expected, soft values act as weights):

* ``psnr``: per-image ``10 log10(1 / MSE)`` (data range 1; MSE over all pixels and channels, clamped at
  1e-10, i.e. at most 100 dB), averaged over images.
* ``psnr_masked``: per-image ``10 log10(1 / MSE_fg)`` with ``MSE_fg = sum(m (p - t)^2) / (3 sum(m))``, the
  MSE over foreground pixels only (all channels), averaged over images with a non-empty mask.
* ``ssim``: torchmetrics' SSIM map (gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03, data range 1) averaged
  over the valid region (5-pixel border excluded, as in Wang et al.'s reference code and skimage; the
  torchmetrics reduction also averages its reflect-padded border, ~1e-3 off), then over images.
* ``lpips``/``fid``: our LPIPS-AlexNet (mean over images); FID between the set of targets (real) and
  the set of predictions (fake) with the FID InceptionV3 (unreliable with few frames: it estimates a
  2048x2048 covariance).
* ``*_masked`` for SSIM/LPIPS/FID: the same on both images composited onto black with the ground-truth
  mask (``p * m``, ``t * m``).
* ``valid`` (a real video's crop padded past the frame): PSNR and SSIM average over the valid pixels only
  (``psnr_masked`` over mask x valid); LPIPS, FID and CSIM see the prediction with the target's values on
  the padded pixels, so padding adds no error anywhere.
* ``csim``: identity similarity, the mean cosine of dlib face descriptors of prediction and ground truth
  on chips aligned on the ground truth's 68 landmarks (:mod:`src.metrics.csim`; unmasked only: the
  descriptor was trained on faces in their surroundings). Without landmarks: a fixed centred crop;
  frames whose landmarks are missing are left out and counted (``num_frames_csim_skipped``).

LPIPS, FID and CSIM need pretrained weights. If they are enabled but their weights cannot be found, then with
``required: true`` construction raises :class:`~src.pretrained.weights.WeightsUnavailableError`; with
``required: false`` one warning line is logged (once per process and metric) and the metric is left
out of the results. FID needs at least 2 images per set; with fewer it is left out with a warning
(as is ``psnr_masked`` when every mask was empty).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure

from src.metrics.csim import CSIMMetric
from src.metrics.fid import FIDMetric
from src.metrics.lpips import LPIPS, LPIPSMetric
from src.pretrained.weights import WeightsUnavailableError, resolve_inception

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # metrics whose missing weights were already reported in this process
_MSE_FLOOR = 1e-10


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(message)


class PSNRMetric(Metric):
    """Mean per-image PSNR (data range 1), optionally over mask-weighted foreground pixels.

    Args:
        masked: if True ``update`` needs a (B,1,H,W) mask and the MSE is taken over foreground pixels.
    """

    is_differentiable = True
    higher_is_better = True
    full_state_update = False

    def __init__(self, masked: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.masked = masked
        self.add_state("sum_psnr", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Accumulate (B,3,H,W) images in [0,1] (and a (B,1,H,W) mask when ``masked``; an unmasked PSNR
        given a mask weighs pixels by it: the valid pixels of a padded crop)."""
        sq = (pred.double() - target.double()).pow(2)
        if self.masked and mask is None:
            raise ValueError("masked PSNR needs a mask")
        if mask is not None:
            m = mask.double().expand_as(sq)
            weight = m.sum(dim=(1, 2, 3))
            keep = weight > 0
            mse = (sq * m).sum(dim=(1, 2, 3))[keep] / weight[keep]
        else:
            mse = sq.mean(dim=(1, 2, 3))
        psnr = -10.0 * torch.log10(mse.clamp(min=_MSE_FLOOR))
        self.sum_psnr += psnr.sum()
        self.total += psnr.numel()

    def compute(self) -> torch.Tensor:
        """Mean PSNR in dB (scalar float64 tensor)."""
        if int(self.total) == 0:
            raise ValueError("PSNRMetric: no images (or no non-empty masks) accumulated")
        return self.sum_psnr / self.total


class SSIMMetric(Metric):
    """Mean per-image SSIM over the valid region (see the module docstring), from torchmetrics' SSIM map."""

    is_differentiable = True
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("sum_ssim", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """Accumulate (B,3,H,W) images in [0,1] (H and W at least 11); ``weight`` (B,1,H,W): average the
        SSIM map over these pixels only (the valid pixels of a padded crop)."""
        _, full = structural_similarity_index_measure(
            pred,
            target,
            gaussian_kernel=True,
            sigma=1.5,
            data_range=1.0,
            reduction="none",
            return_full_image=True,
        )
        pad = 5  # (11 - 1) // 2: border where the gaussian window leaves the image
        full = full[..., pad:-pad, pad:-pad].double()
        if weight is None:
            per_image = full.mean(dim=(1, 2, 3))
        else:
            w = weight[..., pad:-pad, pad:-pad].double().expand_as(full)
            per_image = (full * w).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3)).clamp_min(1e-12)
        self.sum_ssim += per_image.sum()
        self.total += per_image.numel()

    def compute(self) -> torch.Tensor:
        """Mean SSIM (scalar float64 tensor)."""
        if int(self.total) == 0:
            raise ValueError("SSIMMetric: no images accumulated")
        return self.sum_ssim / self.total


def _cfg_get(cfg: Mapping | Any, key: str, default: Any) -> Any:
    value = cfg.get(key, default) if isinstance(cfg, Mapping) else getattr(cfg, key, default)
    return default if value is None and default is not None else value


class ImageMetrics(nn.Module):
    """PSNR/SSIM/LPIPS/FID (unmasked and masked) and CSIM, accumulated over batches (module docstring).

    Frozen networks are hidden in the sub-metrics (never in ``parameters()``/``state_dict()``) and stay
    in eval mode whatever ``.train()`` is called on a parent.

    Args:
        lpips: compute LPIPS.
        fid: compute FID.
        lpips_weights: explicit LPIPS weights path (None: resolve automatically).
        inception_weights: explicit FID Inception weights path (None: resolve automatically).
        required: raise instead of warning when enabled LPIPS/FID/CSIM weights are unavailable.
        masked: also compute the masked variants when a mask is given.
        csim: compute CSIM (dlib face descriptor; weights from face_recognition_models).
        csim_weights: explicit dlib face descriptor ``.dat`` (None: the installed package's).
    """

    def __init__(
        self,
        lpips: bool = True,
        fid: bool = True,
        lpips_weights: str | None = None,
        inception_weights: str | None = None,
        required: bool = False,
        masked: bool = True,
        csim: bool = True,
        csim_weights: str | None = None,
    ) -> None:
        super().__init__()
        self.masked = masked
        self.paused: set[str] = set()  # base names ("fid") left out of update() for now, see pause()
        self.sources: dict[str, str] = {}
        suffixes = ("", "_masked") if masked else ("",)
        metrics: dict[str, Metric] = {}
        for sfx in suffixes:
            metrics["psnr" + sfx] = PSNRMetric(masked=bool(sfx))
            metrics["ssim" + sfx] = SSIMMetric()
        networks = {  # name -> (enabled, load the frozen network, one metric around it)
            "lpips": (lpips, lambda: LPIPS(lpips_weights), lambda net: LPIPSMetric(lpips=net)),
            "fid": (
                fid,
                lambda: resolve_inception(inception_weights),
                lambda net: FIDMetric(feature_extractor=net),
            ),
        }
        for name, (enabled, load, metric) in networks.items():
            if not enabled:
                self.sources[name] = "disabled"
                continue
            try:
                net = load()
            except WeightsUnavailableError as err:
                self._unavailable(name, err, required)
                continue
            self.sources[name] = net.source
            for sfx in suffixes:
                metrics[name + sfx] = metric(net)
        if csim:
            try:
                metrics["csim"] = CSIMMetric(csim_weights)
                self.sources["csim"] = metrics["csim"].source
            except WeightsUnavailableError as err:
                self._unavailable("csim", err, required)
        else:
            self.sources["csim"] = "disabled"
        self.metrics = nn.ModuleDict(metrics)

    def _unavailable(self, name: str, err: WeightsUnavailableError, required: bool) -> None:
        if required:
            raise WeightsUnavailableError(
                f"{name.upper()} is required (metrics.required=true) but {err}"
            ) from err
        _warn_once(name, f"{name.upper()} left out of the metrics: {err}")
        self.sources[name] = f"unavailable: {err}"

    @classmethod
    def from_config(cls, cfg: Mapping | Any | None = None) -> ImageMetrics:
        """Build from a config node (keys: the constructor's arguments)."""
        cfg = cfg or {}
        return cls(
            lpips=bool(_cfg_get(cfg, "lpips", True)),
            fid=bool(_cfg_get(cfg, "fid", True)),
            lpips_weights=_cfg_get(cfg, "lpips_weights", None),
            inception_weights=_cfg_get(cfg, "inception_weights", None),
            required=bool(_cfg_get(cfg, "required", False)),
            masked=bool(_cfg_get(cfg, "masked", True)),
            csim=bool(_cfg_get(cfg, "csim", True)),
            csim_weights=_cfg_get(cfg, "csim_weights", None),
        )

    def train(self, mode: bool = True) -> ImageMetrics:  # frozen networks stay in eval: ignores mode
        return super().train(False)

    def pause(self, name: str, paused: bool = True) -> None:
        """Leave metric ``name`` (both variants, e.g. ``"fid"``) out of :meth:`update` while paused, so an
        expensive metric runs only some epochs (see :class:`src.callbacks.dashboard.FIDSchedule`)."""
        (self.paused.add if paused else self.paused.discard)(name)

    @property
    def names(self) -> list[str]:
        """Names of the metrics this instance computes (those whose weights are available)."""
        return list(self.metrics.keys())

    @torch.no_grad()
    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        landmarks: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> None:
        """Accumulate a batch.

        Args:
            pred: (B,3,H,W) predictions in [0,1] (clamped).
            target: (B,3,H,W) ground truth in [0,1] (clamped).
            mask: optional (B,1,H,W) or (B,H,W) ground-truth foreground mask in [0,1].
            landmarks: optional (B,68,2) ground-truth landmarks (pixels, project convention) for CSIM's
                alignment; non-finite rows = no face (left out of CSIM); None = fixed centred crop.
            valid: optional (B,1,H,W) pixels that exist in the video (0 where a crop was padded past the
                frame): PSNR and SSIM average over them only; for the networks (LPIPS, FID, CSIM) the
                prediction takes the target's values there, so those pixels add no error.
        """
        if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
            raise ValueError(
                f"pred/target must both be (B,3,H,W); got {tuple(pred.shape)}, {tuple(target.shape)}"
            )
        pred, target = pred.float().clamp(0, 1), target.float().clamp(0, 1)
        if valid is not None:
            valid = valid.to(pred).clamp(0, 1)
            if bool((valid >= 1).all()):
                valid = None
            else:
                pred = pred * valid + target * (1 - valid)
        self._update_set("", pred, target, valid)
        if "csim" in self.metrics:
            self.metrics["csim"].update(pred, target, landmarks)
        if mask is not None and self.masked:
            if mask.ndim == 3:
                mask = mask.unsqueeze(1)
            if mask.shape != (pred.shape[0], 1, *pred.shape[2:]):
                raise ValueError(
                    f"mask must be (B,1,H,W) matching {tuple(pred.shape)}; got {tuple(mask.shape)}"
                )
            mask = mask.to(pred).clamp(0, 1)
            if valid is not None:
                mask = mask * valid
            self.metrics["psnr_masked"].update(pred, target, mask)
            self._update_set("_masked", pred * mask, target * mask, valid)

    def _update_set(self, sfx: str, pred: torch.Tensor, target: torch.Tensor, valid=None) -> None:
        if not sfx:
            self.metrics["psnr"].update(pred, target, valid)
        self.metrics["ssim" + sfx].update(pred, target, valid)
        if "lpips" + sfx in self.metrics:
            self.metrics["lpips" + sfx].update(pred, target)
        if "fid" + sfx in self.metrics and "fid" not in self.paused:
            self.metrics["fid" + sfx].update(target, real=True)
            self.metrics["fid" + sfx].update(pred, real=False)

    def compute(self) -> dict[str, Any]:
        """All metrics accumulated so far.

        Returns:
            ``{"psnr", "ssim", "lpips", "fid", "psnr_masked", ...: float, "num_frames": int,
            "num_frames_masked": int, "num_frames_csim": int, "num_frames_csim_skipped": int,
            "sources": {"lpips": str, "fid": str, "csim": str}}``; metrics never updated
            (no masks given), unavailable or with too few samples (FID < 2) are absent.
        """
        out: dict[str, Any] = {}
        for name, metric in self.metrics.items():
            if not metric.update_called:
                continue
            try:
                out[name] = float(metric.compute())
            except ValueError as err:  # too few samples (FID < 2) or only empty masks
                _warn_once(f"{name}-samples", f"{name} left out: {err}")
        out["num_frames"] = int(self.metrics["psnr"].total)
        if self.masked and self.metrics["psnr_masked"].update_called:
            out["num_frames_masked"] = int(self.metrics["psnr_masked"].total)
        if "csim" in self.metrics and self.metrics["csim"].update_called:
            out["num_frames_csim"] = int(self.metrics["csim"].total)
            out["num_frames_csim_skipped"] = int(self.metrics["csim"].skipped)
        out["sources"] = dict(self.sources)
        return out

    def reset(self) -> None:
        """Clear all accumulated state (the networks are kept)."""
        for metric in self.metrics.values():
            metric.reset()
