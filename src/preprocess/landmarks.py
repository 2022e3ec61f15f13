"""Landmark backends: mediapipe FaceMesh (478 with iris) and 68-point iBUG landmarks.

All coordinates are pixels (x,y) with the origin at the image's top-left *corner* (the centre of the
top-left pixel is (0.5,0.5)), the project's convention.

68-point sources, chosen by ``landmarks68`` in the preprocessing config:

- ``face_alignment``: FAN (2DFAN-4) from the face-alignment package, only where its weights are on disk
  (``fan_weights`` or the torch hub cache); it cannot download them offline.
- ``dlib``: dlib's 68-point shape predictor, shipped by ``face_recognition_models``. It is trained on
  iBUG 300-W, whose terms exclude commercial use.
- ``mediapipe``: the 478 FaceMesh points mapped to iBUG-68 (:data:`MP_TO_IBUG68`); no extra weights.
- ``auto``: the first of these that is available.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from src.preprocess.errors import PreprocessError

log = logging.getLogger(__name__)

# iBUG-68 point -> mediapipe FaceMesh vertices (averaged when two). Non-jaw points follow the public
# mediapipe-to-dlib correspondence (Peizhi Yan's Mediapipe_2_Dlib_Landmarks); the jaw contour is chosen
# symmetric from the points nearest to dlib's on a real photo. Measured against dlib on the astronaut
# photo and against ground truth on the synthetic subject: see docs/video.md.
MP_TO_IBUG68: list[tuple[int, ...]] = [
    (127,), (93,), (132,), (58,), (172,), (136, 150), (149,), (148,), (152,),  # jaw 0-8
    (377,), (378,), (365, 379), (397,), (288,), (361,), (323,), (356,),  # jaw 9-16
    (70,), (63,), (105,), (66,), (107,), (336,), (296,), (334,), (293,), (300,),  # brows 17-26
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),  # nose 27-35
    (33,), (160,), (158,), (133,), (153,), (144,), (362,), (385,), (387,), (263,), (373,), (380,),  # eyes
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (321,), (314,), (17,), (84,), (91,),  # outer lips
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),  # inner lips 60-67
]  # fmt: skip


def mediapipe_to_ibug68(lm478: np.ndarray) -> np.ndarray:
    """Map FaceMesh points to iBUG-68.

    Args:
        lm478: (...,478,D) or (...,468,D) mediapipe landmarks.

    Returns:
        (...,68,D) points in the same units.
    """
    idx = np.array([(m[0], m[-1]) for m in MP_TO_IBUG68])  # pairs; single points repeat
    return 0.5 * (lm478[..., idx[:, 0], :] + lm478[..., idx[:, 1], :])


class MediapipeMesh:
    """mediapipe FaceMesh with iris refinement: 478 points per face (bundled model, offline).

    Args:
        static_image_mode: detect on every image (robust, deterministic) instead of tracking.
        min_confidence: detection confidence threshold.
        max_faces: faces returned at most (2 lets callers notice a second face).
    """

    source = "mediapipe"

    def __init__(self, static_image_mode: bool = True, min_confidence: float = 0.5, max_faces: int = 2):
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static_image_mode,
            refine_landmarks=True,
            max_num_faces=max_faces,
            min_detection_confidence=min_confidence,
        )

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        """Faces in an RGB uint8 image (H,W,3) -> list of (478,2) float32 pixel arrays (may be empty)."""
        h, w = image.shape[:2]
        res = self._mesh.process(np.ascontiguousarray(image))
        out = []
        for face in res.multi_face_landmarks or []:
            pts = np.array([(p.x * w, p.y * h) for p in face.landmark], dtype=np.float32)
            out.append(pts)
        return out

    def close(self) -> None:
        self._mesh.close()


def facemesh_regions() -> dict[str, list[int]]:
    """Mouth and eye point indices of FaceMesh's 478 points, from mediapipe's own connection sets.

    ``mouth``: the lip contours (outer and inner); ``eyes``: both eyelid contours and both irises.
    """
    from mediapipe.python.solutions import face_mesh_connections as fm

    def points(*sets: frozenset) -> list[int]:
        return sorted({i for s in sets for edge in s for i in edge})

    return {
        "mouth": points(fm.FACEMESH_LIPS),
        "eyes": points(
            fm.FACEMESH_LEFT_EYE, fm.FACEMESH_RIGHT_EYE, fm.FACEMESH_LEFT_IRIS, fm.FACEMESH_RIGHT_IRIS
        ),
    }


def dlib_model_path() -> Path | None:
    """The 68-point predictor shipped by face_recognition_models, or None (found without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    return path if path.exists() else None


def dlib_available() -> bool:
    return importlib.util.find_spec("dlib") is not None and dlib_model_path() is not None


class Dlib68:
    """dlib's HOG face detector + 68-point shape predictor (iBUG 300-W; non-commercial terms).

    The face box is dlib's own HOG detection that best overlaps ``hint_box``. When HOG finds no such face
    (it is a frontal detector: strong head turns), there is no result: the predictor placed on another box
    gives a frontal-looking shape far from the face, so the
    caller falls back to another source for that frame and records it.
    """

    source = "dlib"

    def __init__(self, upsample: int = 0) -> None:
        if not dlib_available():
            raise PreprocessError(
                "landmarks68=dlib needs dlib and face_recognition_models: "
                "pip install dlib-bin face_recognition_models (or choose landmarks68=mediapipe)"
            )
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(dlib_model_path()))
        self.upsample = upsample

    def __call__(self, image: np.ndarray, hint_box: np.ndarray | None = None) -> np.ndarray | None:
        """68 points (68,2) float32 for the face in ``image`` (H,W,3) uint8, or None.

        Args:
            image: RGB image.
            hint_box: (4,) x0,y0,x1,y1 of the expected face (e.g. the FaceMesh extent), or None.
        """
        img = np.ascontiguousarray(image)
        up = self.upsample
        if hint_box is not None and hint_box[2] - hint_box[0] < 100:  # HOG finds faces of >= ~80 px only
            up = max(up, 1 if hint_box[2] - hint_box[0] >= 50 else 2)
        rects = list(self._detector(img, up))
        rect = None
        if rects and hint_box is not None:
            ious = [
                _iou(np.array([r.left(), r.top(), r.right(), r.bottom()], float), hint_box) for r in rects
            ]
            if max(ious) > 0.3:
                rect = rects[int(np.argmax(ious))]
        elif len(rects) == 1:
            rect = rects[0]
        if rect is None:
            return None
        shape = self._predictor(img, rect)
        # dlib's pixel coordinates have the pixel centre at integers: +0.5 to the corner-origin convention
        return np.array([(p.x + 0.5, p.y + 0.5) for p in shape.parts()], dtype=np.float32)

    def close(self) -> None:
        pass


def disagreement(pts68: np.ndarray, facemesh: np.ndarray) -> float:
    """How far a 68-point result lies from FaceMesh's points mapped to the 68, as a fraction of the face.

    The mean distance over the inner points (brows, eyes, nose, mouth: 17-67; the jaw contour is left out,
    the two detectors place it differently), divided by the width of FaceMesh's face points. Both detectors
    agree to within 2% in every frame of the real clips (``single_face.mp4``, the astronaut clip); on the
    tracking bench's turning synthetic subject dlib's frontal predictor lands 4-8% away on strongly turned
    heads and 22% on a HOG box only partly over the face (24 px from the truth, FaceMesh 2.5 px).

    Args:
        pts68: (68,2) points of a 68-point backend.
        facemesh: (478,2) or (468,2) FaceMesh points of the same image.

    Returns:
        The mean distance divided by the face width.
    """
    mapped = mediapipe_to_ibug68(facemesh)
    width = float(np.ptp(facemesh[:468, 0]))
    return float(np.linalg.norm(pts68[17:] - mapped[17:], axis=-1).mean() / max(width, 1e-6))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x0,y0,x1,y1 boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def fan_weights_path(explicit: str | None = None) -> Path | None:
    """face-alignment's 2DFAN-4 weights: ``explicit`` if it exists, else the torch hub cache, else None."""
    if explicit:
        p = Path(explicit).expanduser()
        return p if p.exists() else None
    try:
        import torch
        from face_alignment.api import models_urls

        name = models_urls["2DFAN-4"].rsplit("/", 1)[-1]
        p = Path(torch.hub.get_dir()) / "checkpoints" / name
        return p if p.exists() else None
    except (ImportError, KeyError):
        return None


class FaceAlignment68:
    """face-alignment's FAN on a given face box (no face detector weights needed).

    Not verified in this project: FAN's weights are not available offline here. Selected only when the
    weights file exists.
    """

    source = "face_alignment"

    def __init__(self, weights: str | None = None) -> None:
        path = fan_weights_path(weights)
        if path is None:
            raise PreprocessError(
                "landmarks68=face_alignment needs FAN's 2DFAN-4 weights, which cannot be downloaded here; "
                "put 2DFAN4-11f355bf06.pth.tar in the torch hub cache or set preprocess.fan_weights, or "
                "choose landmarks68=dlib / mediapipe"
            )
        import face_alignment
        import face_alignment.api as fa_api
        import torch

        orig = fa_api.load_file_from_url
        fa_api.load_file_from_url = lambda url, *a, **k: str(path)  # read the local file, never download
        try:
            self._fa = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D, device="cpu", face_detector="folder", compile=False
            )
        finally:
            fa_api.load_file_from_url = orig
        self._torch = torch

    def __call__(self, image: np.ndarray, hint_box: np.ndarray | None = None) -> np.ndarray | None:
        """68 points (68,2) for the face in ``hint_box`` (x0,y0,x1,y1), or None."""
        if hint_box is None:
            return None
        out = self._fa.get_landmarks_from_image(image, detected_faces=[np.asarray(hint_box, float)])
        return None if not out else np.asarray(out[0][:, :2], dtype=np.float32)

    def close(self) -> None:
        pass


def resolve_landmarks68(name: str, fan_weights: str | None = None) -> str:
    """Which 68-point backend ``name`` ('auto', 'face_alignment', 'dlib', 'mediapipe') means here."""
    if name == "auto":
        if fan_weights_path(fan_weights) is not None:
            return "face_alignment"
        return "dlib" if dlib_available() else "mediapipe"
    if name not in ("face_alignment", "dlib", "mediapipe"):
        raise PreprocessError(
            f"unknown preprocess.landmarks68={name!r}; use auto, face_alignment, dlib or mediapipe"
        )
    return name


def make_landmarks68(name: str, fan_weights: str | None = None, dlib_upsample: int = 0):
    """The 68-point backend object for a resolved name (None for 'mediapipe': mapped from FaceMesh)."""
    if name == "face_alignment":
        return FaceAlignment68(fan_weights)
    if name == "dlib":
        return Dlib68(dlib_upsample)
    return None
