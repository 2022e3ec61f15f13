"""Lightning callbacks (image and video logging, last checkpoint)."""

import src.utils.compat  # noqa: F401  (torchvision's operator schemas first)
