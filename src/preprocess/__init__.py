"""Video preprocessing: decode, detect and crop the face, landmarks, masks -> the subject layout.

``preprocess_video(path, out_root, cfg)`` (see :mod:`src.preprocess.pipeline`); CLI
``python -m src.preprocess video=clip.mp4`` (conf/preprocess.yaml).
"""

from src.preprocess.errors import (
    FaceTooSmallError,
    MultipleFacesError,
    NoFaceError,
    PreprocessError,
    TooFewFramesError,
    VideoReadError,
)
from src.preprocess.pipeline import preprocess_config, preprocess_video

__all__ = [
    "FaceTooSmallError",
    "MultipleFacesError",
    "NoFaceError",
    "PreprocessError",
    "TooFewFramesError",
    "VideoReadError",
    "preprocess_config",
    "preprocess_video",
]
