"""Image metrics: PSNR, SSIM, LPIPS (AlexNet v0.1), FID (unmasked and masked) and CSIM, real weights only.

Public API:
    :class:`ImageMetrics` (suite), :class:`CSIMMetric`, :class:`LPIPS` / :class:`LPIPSMetric`,
    :func:`frechet_distance` / :class:`FIDMetric`, :func:`resolve_lpips_alexnet` /
    :func:`resolve_inception` / :func:`describe` / :class:`WeightsUnavailableError`,
    :func:`evaluate_folders` / :func:`write_table`.
"""

import src.utils.compat  # noqa: F401  (torchvision's operator schemas first)

# isort: split

from src.metrics.csim import CSIMMetric
from src.metrics.evaluate_folder import evaluate_folders, format_table, write_table
from src.metrics.fid import FIDMetric, frechet_distance
from src.metrics.lpips import LPIPS, LPIPSMetric, LPIPSNet
from src.metrics.suite import ImageMetrics, PSNRMetric, SSIMMetric
from src.pretrained.weights import (
    WeightsUnavailableError,
    describe,
    resolve_inception,
    resolve_lpips_alexnet,
)

__all__ = [
    "CSIMMetric",
    "FIDMetric",
    "ImageMetrics",
    "LPIPS",
    "LPIPSMetric",
    "LPIPSNet",
    "PSNRMetric",
    "SSIMMetric",
    "WeightsUnavailableError",
    "describe",
    "evaluate_folders",
    "format_table",
    "frechet_distance",
    "resolve_inception",
    "resolve_lpips_alexnet",
    "write_table",
]
