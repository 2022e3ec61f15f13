"""Base of losses built on a frozen pretrained network kept out of parameters and checkpoints."""

from __future__ import annotations

import torch
from torch import nn


class FrozenNetLoss(nn.Module):
    """Holds a frozen network as a plain attribute (not a registered submodule).

    So the network is not in ``parameters()`` (optimisers never see it) nor in ``state_dict()``
    (checkpoints do not carry its fixed weights), yet ``.to()``, ``.cuda()``, ``.double()`` move it along,
    and it stays in eval mode whatever ``train()`` is called with. Subclasses call :meth:`hold` once.
    """

    def hold(self, net: nn.Module) -> None:
        """Keep ``net`` (frozen, eval mode) as this loss's network."""
        net.eval().requires_grad_(False)
        object.__setattr__(self, "_net", net)
        self.train(False)

    def features(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, *net_args
    ) -> tuple[object, object]:
        """The network's outputs for both images, after an optional mask applied to both.

        Args:
            pred: (N,3,H,W) images in [0,1] (gradients flow to them).
            target: (N,3,H,W) images in [0,1] (a constant unless it requires grad).
            mask: optional (N,1,H,W) weights in [0,1].
            *net_args: further arguments of the network, the same for both images (e.g. landmarks).

        Returns:
            (net(pred), net(target)), in the network's dtype.
        """
        if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
            raise ValueError(f"expected two (N,3,H,W) images, got {tuple(pred.shape)}, {tuple(target.shape)}")
        dtype = next(self._net.parameters()).dtype
        pred, target = pred.to(dtype), target.to(dtype)
        if mask is not None:
            mask = mask.to(dtype)
            pred, target = pred * mask, target * mask
        fp = self._net(pred, *net_args)
        with torch.set_grad_enabled(torch.is_grad_enabled() and target.requires_grad):
            ft = self._net(target, *net_args)  # usually a constant: no activations kept for backward
        return fp, ft

    @property
    def net(self) -> nn.Module:
        """The frozen network."""
        return self._net

    def _apply(self, fn, *args, **kwargs):  # nn.Module._apply signature: move the hidden net too
        if "_net" in self.__dict__:
            self._net._apply(fn)
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True) -> FrozenNetLoss:  # always frozen: ignores mode
        super().train(False)
        if "_net" in self.__dict__:
            self._net.train(False)
        return self
