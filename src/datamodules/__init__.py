"""Data: the on-disk subject layout, the synthetic subject generator and the LightningDataModule."""
