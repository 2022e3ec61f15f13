"""Base of losses built on a frozen pretrained network kept out of parameters and checkpoints."""

from __future__ import annotations

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
