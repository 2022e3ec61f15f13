"""Which pixels of the fixed square crop come from the video (the rest was padded by ``crop.pad_mode``)."""

from __future__ import annotations

import numpy as np

from src.preprocess.detect import CropBox, crop_frame


def crop_valid_mask(box: CropBox, source_hw: tuple[int, int], resolution: int) -> np.ndarray:
    """Validity of every crop pixel: the crop of an all-ones frame padded with zeros, resampled exactly as
    :func:`crop_frame` resamples the video; a pixel is valid only when no padded source pixel reaches it.

    Args:
        box: the sequence crop in source pixels.
        source_hw: (height, width) of the video frames.
        resolution: side of the written crop.

    Returns:
        (resolution,resolution) uint8: 255 valid, 0 padded (also partly padded).
    """
    h, w = int(source_hw[0]), int(source_hw[1])
    ones = np.ones((h, w, 1), np.float32)
    cover = crop_frame(ones, box, resolution, pad_mode="constant")
    return np.where(cover.reshape(resolution, resolution) > 0.999, 255, 0).astype(np.uint8)
