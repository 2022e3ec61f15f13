"""The mesh avatar's learnable per-frame head-model parameters and the start values its priors pull to."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from src.models.frame_params import FrameParams

TABLE_KEYS = ("identity", "expression", "rotation", "translation")


class FrameTables(nn.Module):
    """identity (Ni,), expression (N,Ne), rotation (N,3), translation (N,3) as parameters, and their start
    values ``prior_<key>`` as (non-persistent) buffers.

    The start values are the tracking (``FrameParams``) perturbed by ``init_noise``; the identity and
    expression priors pull towards them and held-out frames start their fit from them, so the priors know
    only what a tracker would have given, never the truth. They are rebuilt (same seed, same noise) when a
    checkpoint is restored, which stores the tracking.

    Args:
        n_expression: expression coefficients Ne (sizes the empty table before the frames are known).
    """

    def __init__(self, n_expression: int) -> None:
        super().__init__()
        self.identity = nn.Parameter(torch.zeros(0))
        self.expression = nn.Parameter(torch.zeros(0, n_expression))
        self.rotation = nn.Parameter(torch.zeros(0, 3))
        self.translation = nn.Parameter(torch.zeros(0, 3))

    def build(
        self,
        frames: FrameParams,
        init_noise: Mapping[str, float] | None,
        seed: int,
        state_dict: Mapping[str, torch.Tensor] | None = None,
        prefix: str = "",
    ) -> None:
        """(Re)create the tables from the tracking plus noise, or sized for ``state_dict`` to load into.

        Args:
            frames: the tracked parameters.
            init_noise: std of the noise: identity, expression, rotation_deg, translation_m (0 or absent:
                start from the tracking).
            seed: seed of the noise.
            state_dict: a checkpoint's state dict about to be loaded (its tables replace the start values).
            prefix: this module's prefix in ``state_dict``.
        """
        g = torch.Generator().manual_seed(int(seed))
        noise = dict(init_noise or {})

        def jitter(x: torch.Tensor, std: float) -> torch.Tensor:
            return x + std * torch.randn(x.shape, generator=g).to(x) if std > 0 else x.clone()

        start = {
            "identity": jitter(frames.identity, noise.get("identity", 0.0)),
            "expression": jitter(frames.expression, noise.get("expression", 0.0)).clamp(0, 1),
            "rotation": jitter(frames.rotation, math.radians(noise.get("rotation_deg", 0.0))),
            "translation": jitter(frames.translation, noise.get("translation_m", 0.0)),
        }
        for k, v in start.items():
            self.register_buffer(f"prior_{k}", v.clone(), persistent=False)  # not aliased by the trained one
            stored = state_dict.get(prefix + k) if state_dict is not None else None
            setattr(self, k, nn.Parameter(torch.zeros_like(stored) if stored is not None else v))

    def prior(self, key: str) -> torch.Tensor:
        """The start value of table ``key`` (what its prior pulls towards)."""
        return getattr(self, f"prior_{key}")

    @torch.no_grad()
    def pose_offset(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean rotation (3,) and translation (3,) that training added to frames ``index`` (N_i,)."""
        d_rot = (self.rotation - self.prior_rotation)[index].mean(0)
        d_trans = (self.translation - self.prior_translation)[index].mean(0)
        return d_rot, d_trans
