"""Data: the on-disk subject layout, the synthetic subject generator and the LightningDataModule."""

import src.utils.compat  # noqa: F401  (torchvision's operator schemas first)
