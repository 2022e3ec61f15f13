"""Face detection over a video and one stable square crop for the whole sequence.

The crop is fixed for the sequence (the camera of the subject layout is fixed, so a moving crop would
change the intrinsics per frame): it covers the temporally smoothed face track, with a margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# per-frame status values
OK, NO_FACE, MULTIPLE, TOO_SMALL, NO_LANDMARKS = (
    "ok",
    "no_face",
    "multiple_faces",
    "too_small",
    "no_landmarks",
)


class FaceDetector:
    """mediapipe's BlazeFace detectors (bundled weights, offline) on frames downscaled to ``max_side``.

    Args:
        model_selection: a model or a list tried in order until one finds a face: 0 short range (faces
            within ~2 m: selfies; it also finds strongly turned heads), 1 full range (up to ~5 m).
        min_confidence: detection score threshold.
        max_side: frames larger than this are downscaled before detection (boxes are in source pixels).
    """

    def __init__(
        self, model_selection: int | list[int] = (0, 1), min_confidence: float = 0.5, max_side: int = 640
    ) -> None:
        import mediapipe as mp

        models = [model_selection] if isinstance(model_selection, int) else list(model_selection)
        self._dets = [
            mp.solutions.face_detection.FaceDetection(
                model_selection=m, min_detection_confidence=min_confidence
            )
            for m in models
        ]
        self.max_side = max_side

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Detect faces in an RGB uint8 image (H,W,3).

        Returns:
            boxes (K,4) float32 x0,y0,x1,y1 in source pixels (corner origin) and scores (K,) float32.
        """
        h, w = image.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        small = (
            cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else image
        )
        small = np.ascontiguousarray(small)
        boxes, scores = [], []
        for det in self._dets:
            for d in det.process(small).detections or []:
                b = d.location_data.relative_bounding_box
                boxes.append([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h])
                scores.append(d.score[0])
            if boxes:
                break
        return np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32)

    def close(self) -> None:
        for det in self._dets:
            det.close()


def classify_frame(
    boxes: np.ndarray, min_face_size: float, multi_face_ratio: float = 0.5
) -> tuple[str, np.ndarray | None]:
    """Status of one frame and its face box.

    Args:
        boxes: (K,4) detections of the frame.
        min_face_size: smallest usable face width in source pixels.
        multi_face_ratio: a second face at least this fraction of the largest face's size counts as
            another person (smaller ones, e.g. a photo on the wall, are ignored).

    Returns:
        (status, box): status in ok / no_face / multiple_faces / too_small; the largest face's box (4,).
    """
    if len(boxes) == 0:
        return NO_FACE, None
    size = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    order = np.argsort(-size)
    box = boxes[order[0]]
    if len(boxes) > 1 and size[order[1]] >= multi_face_ratio * size[order[0]]:
        return MULTIPLE, box
    if min(box[2] - box[0], box[3] - box[1]) < min_face_size:
        return TOO_SMALL, box
    return OK, box


def smooth_track(boxes: np.ndarray, window: int = 5) -> np.ndarray:
    """Temporal median filter of face boxes (centre and size), robust to single-frame outliers.

    Args:
        boxes: (N,4) x0,y0,x1,y1 of consecutive usable frames.
        window: odd filter length.

    Returns:
        (N,4) smoothed boxes.
    """
    n = len(boxes)
    if n == 0 or window <= 1:
        return boxes.copy()
    c = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    s = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[:, None]
    feats = np.concatenate([c, s], 1)
    half = window // 2
    out = np.stack([np.median(feats[max(0, i - half) : i + half + 1], 0) for i in range(n)])
    return np.concatenate([out[:, :2] - out[:, 2:] / 2, out[:, :2] + out[:, 2:] / 2], 1).astype(np.float32)


@dataclass
class CropBox:
    """A square crop ``[x0, x0+side) x [y0, y0+side)`` in source pixels (integers; may leave the image)."""

    x0: int
    y0: int
    side: int

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.side]

    def to_crop(self, points: np.ndarray, resolution: int) -> np.ndarray:
        """Source pixel coordinates (...,2) -> coordinates in the resized crop (corner-origin convention)."""
        return (points - np.array([self.x0, self.y0], np.float32)) * (resolution / self.side)

    def intrinsics_to_crop(self, K: np.ndarray, resolution: int) -> np.ndarray:
        """Source-image intrinsics (3,3) -> intrinsics of the resized crop (3,3)."""
        s = resolution / self.side
        S = np.array([[s, 0, -s * self.x0], [0, s, -s * self.y0], [0, 0, 1]], np.float64)
        return (S @ K).astype(np.float32)


def sequence_crop(
    boxes: np.ndarray,
    scale: float = 2.0,
    shift_y: float = -0.1,
    frame_hw: tuple[int, int] | None = None,
    min_scale: float | None = None,
) -> CropBox:
    """One square crop covering every (smoothed) face box scaled by ``scale`` about its centre, kept
    inside the video frame where the track allows.

    With ``frame_hw`` and ``min_scale``, a crop larger than the frame shrinks to the frame's shorter side,
    but never below the side that covers every face box scaled by ``min_scale``; then it moves into the
    frame as far as it can while still covering those boxes. The pixels it gains are real video, not
    padding: a 512 px square source whose 2x crop was 647 px (38% padding) becomes the whole frame, the face
    a quarter larger in the crop.

    Args:
        boxes: (N,4) smoothed face boxes of the usable frames.
        scale: crop side / face size (2.0 keeps hair, ears and some neck).
        shift_y: vertical offset of the crop centre in face sizes (negative: up, to keep the hair).
        frame_hw: (H,W) of the video frames; None: the crop may leave the frame freely.
        min_scale: the smallest margin (crop side / face size) fitting the crop inside the frame may leave;
            None: the crop is never shrunk or moved.

    Returns:
        The crop (it may still extend beyond the image where the track needs it; the outside is padded).
    """

    def cover(k: float) -> tuple[np.ndarray, np.ndarray]:  # corners of the union of the boxes scaled by k
        return (c - k * s[:, None] / 2).min(0), (c + k * s[:, None] / 2).max(0)

    c = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    s = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    c = c + np.stack([np.zeros_like(s), shift_y * s], 1)
    lo, hi = cover(scale)
    side = int(np.ceil((hi - lo).max()))
    corner = 0.5 * (lo + hi) - side / 2
    if frame_hw is not None and min_scale is not None:
        size = np.array([frame_hw[1], frame_hw[0]], np.float64)  # (W,H) like the corners
        need_lo, need_hi = cover(min(min_scale, scale))
        side = max(int(np.ceil((need_hi - need_lo).max())), min(side, int(size.min())))
        corner = 0.5 * (lo + hi) - side / 2
        room = size - side  # < 0 where the crop is wider than the frame: it then spans the whole frame
        inside = np.clip(corner, np.minimum(room, 0), np.maximum(room, 0))
        corner = np.clip(inside, need_hi - side, need_lo)  # but still covering every face box
    return CropBox(int(round(corner[0])), int(round(corner[1])), side)


def crop_frame(image: np.ndarray, box: CropBox, resolution: int, pad_mode: str = "edge") -> np.ndarray:
    """Cut the square ``box`` out of ``image`` (padding outside) and resize it to ``resolution``.

    Args:
        image: (H,W,3) uint8.
        box: the crop in source pixels.
        resolution: output side.
        pad_mode: numpy pad mode for the part of the crop outside the image ("edge" or "constant").

    Returns:
        (resolution,resolution,3) uint8; a source point p maps to ``box.to_crop(p, resolution)``.
    """
    h, w = image.shape[:2]
    x0, y0, side = box.x0, box.y0, box.side
    pads = (max(0, -y0), max(0, y0 + side - h), max(0, -x0), max(0, x0 + side - w))
    if any(pads):
        image = np.pad(image, ((pads[0], pads[1]), (pads[2], pads[3]), (0, 0)), mode=pad_mode)
        x0, y0 = x0 + pads[2], y0 + pads[0]
    patch = image[y0 : y0 + side, x0 : x0 + side]
    interp = cv2.INTER_AREA if side > resolution else cv2.INTER_LINEAR
    return cv2.resize(patch, (resolution, resolution), interpolation=interp)
