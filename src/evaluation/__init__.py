"""Evaluation above the models: score trained checkpoints and compare the runs of a multirun.

Public API: :func:`compare_sweep`, :func:`compare_checkpoints`, :func:`find_runs`, :func:`format_comparison`
(src/evaluation/compare.py) and the :class:`CompareSweep` Hydra callback (src/evaluation/hydra_callbacks.py).
"""

import src.utils.compat  # noqa: F401  (torchvision's operator schemas first)
