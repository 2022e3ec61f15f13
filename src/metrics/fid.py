"""Frechet Inception Distance: the closed form in float64, and a torchmetrics accumulator.

``FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr( (S1 S2)^(1/2) )``. The trace of the matrix square root is
computed from the eigenvalues of the symmetric PSD matrix ``A^T S2 A`` with ``S1 = A A^T`` (e.g.
``A = S1^(1/2)``), which has the same spectrum as ``S1 S2`` (what ``scipy.linalg.sqrtm(S1 @ S2)`` takes
the root of) but stays real and stable. With fewer samples than dimensions (the usual case for a test
sequence: a few hundred frames, 2048 features) the covariances have rank < n and an exact low-rank
factor makes this O(D^2 n) instead of O(D^3).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchmetrics import Metric

from src.pretrained.weights import resolve_inception


def _psd_factor(mat: torch.Tensor, max_rank: int | None = None) -> torch.Tensor:
    """A factor ``A`` with ``A @ A.T == mat`` for a symmetric PSD (D,D) float64 matrix.

    Full eigendecomposition (A is (D,D)); when ``rank(mat) <= max_rank`` is known and small, a randomized
    range finder gives an exact (D,k) factor with k = max_rank + 10 in O(D^2 k) instead of O(D^3).
    """
    mat = 0.5 * (mat + mat.T)
    d = mat.shape[0]
    if max_rank is None or max_rank + 10 >= d:
        evals, evecs = torch.linalg.eigh(mat)
        return evecs * evals.clamp(min=0).sqrt()
    probe = torch.randn(d, max_rank + 10, dtype=mat.dtype, generator=torch.Generator().manual_seed(0))
    basis, _ = torch.linalg.qr(mat @ probe)  # (D,k): spans range(mat) since rank(mat) <= max_rank < k
    small = basis.T @ mat @ basis
    evals, evecs = torch.linalg.eigh(0.5 * (small + small.T))
    return (basis @ evecs) * evals.clamp(min=0).sqrt()


def frechet_distance(
    mu1: torch.Tensor,
    sigma1: torch.Tensor,
    mu2: torch.Tensor,
    sigma2: torch.Tensor,
    max_rank: int | None = None,
) -> float:
    """Frechet distance between two Gaussians N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    ``tr((S1 S2)^(1/2))`` is the sum of square roots of the eigenvalues of ``A^T S2 A`` for any factor
    ``S1 = A A^T`` (same spectrum as ``S1^(1/2) S2 S1^(1/2)`` and as ``S1 S2``).

    Args:
        mu1: (D,) mean of the first set.
        sigma1: (D,D) covariance of the first set.
        mu2: (D,) mean of the second set.
        sigma2: (D,D) covariance of the second set.
        max_rank: optional upper bound on ``rank(sigma1)`` (``n1 - 1`` for a sample covariance of n1
            samples); when much smaller than D a faster exact path is used.

    Returns:
        The distance as a Python float (>= 0 up to round-off).
    """
    mu1, mu2, s1, s2 = (torch.as_tensor(t).double().cpu() for t in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(f"shape mismatch: mu {tuple(mu1.shape)}/{tuple(mu2.shape)}, sigma {tuple(s1.shape)}")
    factor = _psd_factor(s1, max_rank)
    inner = factor.T @ s2 @ factor
    tr_covmean = torch.linalg.eigvalsh(0.5 * (inner + inner.T)).clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff.dot(diff) + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean)


class FIDMetric(Metric):
    """FID between "real" and "fake" images, accumulated as float64 feature sums and outer-product sums.

    States (dist-reduced by sum): ``{real,fake}_sum`` (D,), ``{real,fake}_outer`` (D,D), ``{real,fake}_n``.
    The feature extractor is frozen and kept out of ``state_dict()``/``parameters()``.

    Args:
        feature_extractor: module mapping (N,...) inputs to (N,D) features; None resolves the FID
            InceptionV3 (:func:`src.pretrained.weights.resolve_inception`), which takes (N,3,H,W) in [0,1].
        weights: explicit Inception weights path when ``feature_extractor`` is None.
        num_features: D; inferred from the extractor's ``num_features`` attribute, else 2048.
        **kwargs: passed to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        weights: str | Path | None = None,
        num_features: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if feature_extractor is None:
            feature_extractor = resolve_inception(weights)
        feature_extractor.eval().requires_grad_(False)
        object.__setattr__(self, "_extractor", feature_extractor)
        self.source = getattr(feature_extractor, "source", type(feature_extractor).__name__)
        d = num_features or getattr(feature_extractor, "num_features", 2048)
        for kind in ("real", "fake"):
            self.add_state(f"{kind}_sum", torch.zeros(d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{kind}_outer", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{kind}_n", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    @property
    def feature_extractor(self) -> nn.Module:
        """The frozen feature extractor (not a registered submodule)."""
        return self._extractor

    def _apply(self, fn, *args, **kwargs):  # nn.Module._apply signature
        self._extractor._apply(fn)
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True) -> FIDMetric:  # frozen extractor: ignores mode
        return super().train(False)

    def update(self, images: torch.Tensor, real: bool) -> None:
        """Accumulate a batch.

        Args:
            images: (N,3,H,W) images in [0,1] (or whatever the feature extractor takes).
            real: True for reference images, False for generated ones.
        """
        with torch.no_grad():
            feats = self._extractor(images)
        if feats.ndim != 2 or feats.shape[1] != self.real_sum.numel():
            raise ValueError(
                f"feature extractor returned {tuple(feats.shape)}, expected (N,{self.real_sum.numel()})"
            )
        feats = feats.double()
        kind = "real" if real else "fake"
        setattr(self, f"{kind}_sum", getattr(self, f"{kind}_sum") + feats.sum(0))
        setattr(self, f"{kind}_outer", getattr(self, f"{kind}_outer") + feats.T @ feats)
        setattr(self, f"{kind}_n", getattr(self, f"{kind}_n") + feats.shape[0])

    def _stats(self, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        n = int(getattr(self, f"{kind}_n"))
        if n < 2:
            raise ValueError(f"FID needs at least 2 {kind} samples to estimate a covariance, got {n}")
        mu = getattr(self, f"{kind}_sum") / n
        sigma = (getattr(self, f"{kind}_outer") - n * torch.outer(mu, mu)) / (n - 1)
        return mu, sigma

    def compute(self) -> torch.Tensor:
        """FID between the accumulated real and fake sets (scalar float64 tensor)."""
        (mu_r, s_r), (mu_f, s_f) = self._stats("real"), self._stats("fake")
        n_r, n_f = int(self.real_n), int(self.fake_n)
        if n_f < n_r:  # FID is symmetric: factor the covariance of the smaller set
            mu_r, s_r, mu_f, s_f, n_r = mu_f, s_f, mu_r, s_r, n_f
        return torch.tensor(frechet_distance(mu_r, s_r, mu_f, s_f, max_rank=n_r - 1), dtype=torch.float64)
