"""Loss terms (small pure functions) and their weighted sum."""

from src.losses.photometric import rgb_l1, silhouette_loss
from src.losses.weighted import WeightedLoss

__all__ = ["WeightedLoss", "rgb_l1", "silhouette_loss"]
