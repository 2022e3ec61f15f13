"""Resolvers of real pretrained weights (metrics and frozen loss networks).

Each weight comes from a path, a cache or a package, never random.
"""

import src.utils.compat  # noqa: F401  (torchvision's operator schemas first)
