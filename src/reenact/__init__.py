"""Reenactment: parameter sequences (self, cross, presets, head/neck pose), orbit cameras, video output.

Modules:
    :mod:`~src.reenact.sequences`: :class:`ParamSequence`, self/cross sequences, head and neck overrides.
    :mod:`~src.reenact.presets`: named ARKit expression presets, mixing and ease-in/out ramps.
    :mod:`~src.reenact.cameras`: the subject's camera at any resolution, orbits for novel views.
    :mod:`~src.reenact.pipeline`: a config -> sequence + cameras -> rendered files (used by reenact.py).
"""

from src.reenact.cameras import orbit_cameras, scale_intrinsics, subject_cameras
from src.reenact.presets import load_presets, mix_presets, preset_sequence, preset_vectors, ramp_weights
from src.reenact.sequences import (
    ParamSequence,
    ReenactError,
    apply_head_pose,
    apply_neck_pose,
    cross_sequence,
    facing_rotation,
    keyframe_curve,
    reference_frame,
    reference_pose,
    select_frames,
    self_sequence,
)

__all__ = [
    "ParamSequence",
    "ReenactError",
    "apply_head_pose",
    "apply_neck_pose",
    "cross_sequence",
    "facing_rotation",
    "keyframe_curve",
    "load_presets",
    "mix_presets",
    "orbit_cameras",
    "preset_sequence",
    "preset_vectors",
    "ramp_weights",
    "reference_frame",
    "reference_pose",
    "scale_intrinsics",
    "select_frames",
    "self_sequence",
    "subject_cameras",
]
