"""Selfie-video head avatars: head models, a differentiable renderer, data, models and metrics.

Importing ``src`` first makes torchvision importable on machines whose torchvision wheel does not
match the installed torch (see :mod:`src.utils.compat`).
"""

from src.utils.compat import ensure_torchvision_ops

ensure_torchvision_ops()
