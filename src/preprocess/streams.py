"""The optional streams written after the crop pass: crop validity, background plate, occlusion masks.

See src/core/streams.py for what they hold and how losses and metrics use them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from src.core.layout import SubjectLayout
from src.preprocess.background import write_background
from src.preprocess.detect import CropBox
from src.preprocess.errors import format_frames
from src.preprocess.occlusion import OCCLUSION_SOURCE, detect_occlusions
from src.preprocess.validity import crop_valid_mask
from src.utils.io import write_png

log = logging.getLogger(__name__)

BACKGROUND_MODES = ("plate", "none")
OCCLUSION_MODES = ("appearance", "none")


def write_streams(
    layout: SubjectLayout,
    cfg: dict[str, Any],
    box: CropBox,
    source_hw: tuple[int, int],
    lmk478: np.ndarray,
) -> tuple[dict[str, Any], dict[str, bool], dict[str, str]]:
    """Write ``valid.png``, the background plate and the occlusion masks of a preprocessed subject.

    Args:
        layout: subject whose frames/ and masks/ are written.
        cfg: preprocessing config (``background``, ``background_holdout``, ``occlusion``, ``resolution``).
        box: the sequence crop in source pixels.
        source_hw: (height, width) of the video frames.
        lmk478: (N,478,2) FaceMesh points of the written frames.

    Returns:
        (meta.json entries, ``available`` entries, ``absent`` entries).
    """
    for key, modes in (("background", BACKGROUND_MODES), ("occlusion", OCCLUSION_MODES)):
        if cfg[key] not in modes:
            raise ValueError(f"preprocess.{key}={cfg[key]!r} is not one of {modes}; pick one of them")
    res, n = int(cfg["resolution"]), len(lmk478)
    valid = crop_valid_mask(box, source_hw, res)
    write_png(layout.valid_path, valid)
    n_invalid = int((valid == 0).sum())
    if n_invalid:
        log.info("%d of %d crop pixels lie outside the video (padded; kept out of losses and metrics)",
                 n_invalid, valid.size)  # fmt: skip
    meta: dict[str, Any] = {
        "valid": {"invalid_px": n_invalid, "invalid_fraction": round(n_invalid / valid.size, 5)}
    }
    available = {"valid": True, "background": False, "occlusion": False}
    absent: dict[str, str] = {}
    if cfg["background"] == "plate" and cfg["segmentation"] == "selfie":
        meta["background"], why = write_background(
            layout, n, valid > 0, holdout=int(cfg["background_holdout"])
        )
        available["background"] = not why
        if why:
            absent["background"] = why + "; training uses the learned background"
    else:
        absent["background"] = "preprocess.background=none (or no person masks)"
    if cfg["occlusion"] == "appearance":
        frames = np.stack([layout.read_image("frames", i) for i in range(n)])
        masks, flags, frac = detect_occlusions(frames, lmk478)
        for i in range(n):
            write_png(layout.frame_path("occlusion", i), masks[i])
        frames_hit = np.nonzero(flags)[0].tolist()
        meta["occlusion"] = {
            "source": OCCLUSION_SOURCE, "frames": frames_hit,
            "fraction": {str(i): round(float(frac[i]), 3) for i in frames_hit},
            "reason": {str(i): "the face differs from its median appearance (a hand or an object)"
                       for i in frames_hit},
        }  # fmt: skip
        available["occlusion"] = True
        if frames_hit:
            log.warning("occluded face in %d frames (%s); kept out of the photometric and landmark terms",
                        len(frames_hit), format_frames(frames_hit))  # fmt: skip
    else:
        absent["occlusion"] = "preprocess.occlusion=none"
    return meta, available, absent
