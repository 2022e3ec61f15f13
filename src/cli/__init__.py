"""Command-line entry points: ``train``, ``evaluate``, ``reenact`` (Hydra apps; see docs/research.md).

The checkout's ``train.py``, ``evaluate.py`` and ``reenact.py`` and the installed ``avatar-train``,
``avatar-eval`` and ``avatar-reenact`` scripts all call the ``main`` of these modules.
"""

import src.utils.compat  # noqa: F401  (torchvision's operator schemas before Lightning loads)
