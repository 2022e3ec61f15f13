"""A weighted sum of named loss terms, returned with the individual terms for logging."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch


class WeightedLoss:
    """Combine named terms with weights from config.

    Args:
        weights: term name -> weight. Terms with weight 0 are skipped (not computed).
        terms: term name -> zero-argument callable computing it (lazily, so skipped terms cost nothing).

    Example:
        >>> total, parts = WeightedLoss({"a": 1.0})({"a": lambda: torch.tensor(2.0)})
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = {k: float(v) for k, v in weights.items()}

    def __call__(
        self, terms: Mapping[str, Callable[[], torch.Tensor]]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Evaluate the weighted sum.

        Raises:
            KeyError: a weighted term has no implementation (a typo in the loss config).

        Returns:
            total () and a dict of the unweighted terms that were computed.
        """
        unknown = [k for k, w in self.weights.items() if w != 0 and k not in terms]
        if unknown:
            raise KeyError(
                f"loss config names terms {unknown} that this model does not compute: {sorted(terms)}"
            )
        parts = {k: terms[k]() for k, w in self.weights.items() if w != 0}
        if not parts:
            raise ValueError("every loss weight is 0; nothing to optimise")
        total = sum(self.weights[k] * v for k, v in parts.items())
        return total, parts
