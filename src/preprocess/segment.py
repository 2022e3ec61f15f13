"""Foreground masks (mediapipe selfie segmentation) and face-part labels from FaceMesh polygons.

No face-parsing network with weights is available offline, so the part labels come from geometry:
the FaceMesh polygons give skin (face oval), brows, eyes, lips and the mouth interior exactly where the
landmarks are; outside the face oval, foreground above the jaw-angle line is labelled hair and below it
neck (a heuristic: ears count as hair, clothes as neck). Teeth are not separated from the mouth interior.
"""

from __future__ import annotations

import cv2
import numpy as np

from src.core.layout import SEG_LABELS

SEGMENTATION_SOURCE = (
    "facemesh_polygons+selfie_segmentation (skin/brows/eyes/lips/mouth_interior from FaceMesh; hair/neck = "
    "foreground outside the face oval above/below the jaw-angle line; no teeth label)"
)

# FaceMesh vertex loops (checked against mediapipe.solutions.face_mesh_connections)
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]  # fmt: skip
LIPS_OUTER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]
LIPS_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95]
EYES = [
    [33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7],
    [263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249],
]
BROWS = [[70, 63, 105, 66, 107, 55, 65, 52, 53, 46], [300, 293, 334, 296, 336, 285, 295, 282, 283, 276]]
JAW_ANGLES = (172, 397)  # a line through these separates hair (above) from neck (below)


class SelfieSegmenter:
    """mediapipe selfie segmentation (bundled weights): person probability per pixel.

    Args:
        model_selection: 0 general (256x256 input, better for close-ups), 1 landscape.
    """

    source = "mediapipe_selfie_segmentation"

    def __init__(self, model_selection: int = 0) -> None:
        import mediapipe as mp

        self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model_selection)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 (H,W,3) -> foreground alpha (H,W) uint8 0..255."""
        res = self._seg.process(np.ascontiguousarray(image))
        return (np.clip(res.segmentation_mask, 0, 1) * 255).round().astype(np.uint8)

    def close(self) -> None:
        self._seg.close()


def _fill(label: np.ndarray, pts: np.ndarray, value: int) -> None:
    cv2.fillPoly(
        label, [np.round((pts - 0.5) * 16).astype(np.int32)], int(value), lineType=cv2.LINE_8, shift=4
    )


def face_parts(lm478: np.ndarray, mask: np.ndarray, threshold: int = 128) -> np.ndarray:
    """Label map from FaceMesh points and the foreground mask.

    Args:
        lm478: (478,2) pixel coordinates (corner origin).
        mask: (H,W) uint8 foreground alpha.
        threshold: alpha above which a pixel is foreground.

    Returns:
        (H,W) uint8 indices into :data:`SEG_LABELS` (no ``teeth``).
    """
    L = {n: i for i, n in enumerate(SEG_LABELS)}
    h, w = mask.shape
    fg = mask >= threshold
    seg = np.zeros((h, w), np.uint8)
    # outside the face oval: hair above the jaw-angle line, neck below it
    a, b = lm478[JAW_ANGLES[0]], lm478[JAW_ANGLES[1]]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    d = b - a
    below = (d[0] * (yy - a[1]) - d[1] * (xx - a[0])) * np.sign(d[0] or 1.0) > 0
    seg[fg & ~below] = L["hair"]
    seg[fg & below] = L["neck"]
    face = np.zeros((h, w), np.uint8)
    _fill(face, lm478[FACE_OVAL], 1)
    seg[face > 0] = L["skin"]
    for poly in BROWS:
        _fill(seg, lm478[poly], L["brows"])
    for poly in EYES:
        _fill(seg, lm478[poly], L["eyes"])
    _fill(seg, lm478[LIPS_OUTER], L["lips"])
    _fill(seg, lm478[LIPS_INNER], L["mouth_interior"])
    return seg
