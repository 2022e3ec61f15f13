"""Avatar LightningModules (one per model family)."""

import src.utils.compat  # noqa: F401  (torchvision's operator schemas first)
