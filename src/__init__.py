"""Selfie-video head avatars: head models, a differentiable renderer, data, models, metrics and the studio.

Importing ``src`` loads nothing: the web app (``src.app``) runs without torch. The packages whose code loads
torchvision, torchmetrics or Lightning import :mod:`src.utils.compat` first.
"""
