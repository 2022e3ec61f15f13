"""Fit held-out frames' expression and pose to their landmarks and pixels, the avatar itself frozen.

Only three tensors are optimised (the frames' expressions, rotations and translations); their gradients
come from ``torch.autograd.grad`` with respect to those tensors alone, so the avatar's parameters are
never touched and never change their ``requires_grad``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from src.core.outputs import Batch
from src.utils.signals import check_stop

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
    """

    steps: int = 0
    lr: float = 2e-3
    batch_size: int = 8
    weights: dict[str, float] = field(default_factory=lambda: {"landmarks": 1.0, "rgb_l1": 1.0})

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> HeldoutFit:
        """From a config mapping (missing keys keep their defaults)."""
        cfg = dict(cfg or {})
        fit = cls(steps=int(cfg.get("steps", 0)), lr=float(cfg.get("lr", 2e-3)),
                  batch_size=int(cfg.get("batch_size", 8)))  # fmt: skip
        if cfg.get("weights") is not None:
            fit.weights = {k: float(v) for k, v in dict(cfg["weights"]).items()}
        return fit

    def run(
        self,
        loss_of: LossOfParams,
        expression: torch.Tensor,
        rotation: torch.Tensor,
        translation: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Optimise the start values with Adam.

        Args:
            loss_of: the loss of given parameters of the frames in a slice of the batch.
            expression: (N,Ne) start expressions; rotation, translation: (N,3) start poses.

        Returns:
            fitted expression (N,Ne) (clamped to [0,1]), rotation (N,3), translation (N,3), detached.
        """
        params = [t.detach().clone() for t in (expression, rotation, translation)]
        opt = torch.optim.Adam(params, lr=self.lr)
        n = expression.shape[0]
        with torch.enable_grad():
            for p in params:
                p.requires_grad_(True)
            for _ in range(self.steps):
                check_stop("held-out fit")
                for s in range(0, n, self.batch_size):
                    rows = slice(s, s + self.batch_size)
                    total, _ = loss_of(params[0][rows].clamp(0, 1), params[1][rows], params[2][rows], rows)
                    grads = torch.autograd.grad(total, params, allow_unused=True)
                    for p, g in zip(params, grads):
                        p.grad = g  # None (unused): Adam leaves that tensor alone this step
                    opt.step()
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
