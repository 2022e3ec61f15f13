"""Parameter sequences for reenactment: self, cross (relative transfer), held poses, head/neck overrides.

Everything here is a pure function of tensors (no model, no files). A sequence is a
:class:`ParamSequence` of per-frame head-model parameters that :meth:`AvatarMixin.render_params` renders.

Pose conventions (those of the head models, see :mod:`src.headmodel.base`): posed vertices are
``R_head @ v + t_head`` in the world frame (metres, +y up, +z out of the face); cameras are OpenCV
world-to-camera ``R_cam``, ``t_cam``. Angles in the public functions are degrees.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from src.headmodel.rotation import axis_angle_to_matrix, euler_to_axis_angle, matrix_to_axis_angle

SEQUENCE_KEYS = ("expression", "rotation", "translation", "joint_pose")


class ReenactError(ValueError):
    """Bad reenactment settings or inputs; the message names the problem and the fix."""


@dataclass
class ParamSequence:
    """Per-frame head-model parameters of N frames.

    Attributes:
        expression: (N,n_expression).
        rotation: (N,3) axis-angle head rotation about the model origin.
        translation: (N,3) metres.
        joint_pose: (N,n_joint_pose) (FLAME: neck, jaw, left eye, right eye; (N,0) for ICT).
    """

    expression: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    joint_pose: torch.Tensor

    def __post_init__(self) -> None:
        n = self.expression.shape[0]
        for f in fields(self):
            value = getattr(self, f.name)
            if value.dim() != 2 or value.shape[0] != n:
                raise ReenactError(
                    f"ParamSequence.{f.name} has shape {tuple(value.shape)}, expected ({n},D); "
                    "build sequences with the functions of src.reenact"
                )

    def __len__(self) -> int:
        return int(self.expression.shape[0])

    def __getitem__(self, idx: slice | torch.Tensor) -> ParamSequence:
        """Frames ``idx`` (a slice or an index tensor) as a new sequence."""
        return ParamSequence(*(getattr(self, k)[idx] for k in SEQUENCE_KEYS))

    def to(self, device: torch.device | str) -> ParamSequence:
        """A copy on ``device``."""
        return ParamSequence(*(getattr(self, k).to(device) for k in SEQUENCE_KEYS))

    def numpy(self) -> dict[str, np.ndarray]:
        """The arrays as float32 numpy (for ``sequence.npz``)."""
        return {k: getattr(self, k).detach().cpu().float().numpy() for k in SEQUENCE_KEYS}

    @classmethod
    def hold(
        cls,
        pose: tuple[torch.Tensor, torch.Tensor],
        expression: torch.Tensor,
        joint_pose: torch.Tensor | None = None,
    ) -> ParamSequence:
        """One head pose held still under a sequence of expressions.

        Args:
            pose: (rotation (3,), translation (3,)), e.g. from :func:`reference_pose`.
            expression: (N,n_expression).
            joint_pose: (N,n_joint_pose), or None for none (ICT).

        Returns:
            ParamSequence of N frames.
        """
        rotation, translation = pose
        n = expression.shape[0]
        if joint_pose is None:
            joint_pose = expression.new_zeros(n, 0)
        return cls(
            expression.float(),
            rotation.float().expand(n, 3).clone(),
            translation.float().to(rotation).expand(n, 3).clone(),
            joint_pose.float(),
        )


def param_dict(frames) -> dict[str, torch.Tensor]:
    """Parameters of a :class:`~src.models.frame_params.FrameParams` or a mapping (e.g. an npz) as tensors.

    Returns:
        dict with float32 expression (N,Ne), rotation (N,3), translation (N,3), joint_pose (N,Nj) and,
        where present, identity (Ni,), K (3,3), R (3,3), t (3,).
    """
    out = {}
    for key in (*SEQUENCE_KEYS, "identity", "K", "R", "t"):
        value = frames.get(key) if isinstance(frames, Mapping) else getattr(frames, key, None)
        if value is not None:
            out[key] = torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value).float()
    missing = [k for k in SEQUENCE_KEYS if k not in out]
    if missing:
        raise ReenactError(
            f"tracked parameters lack {missing}; use a tracking.npz or ground_truth/params.npz"
        )
    n = out["expression"].shape[0]
    if out["joint_pose"].numel() == 0:
        out["joint_pose"] = out["expression"].new_zeros(n, 0)
    return out


def select_frames(spec, n_frames: int, default: Sequence[int] | None = None) -> list[int]:
    """Frame indices from a config value.

    Args:
        spec: None (``default``, or all frames), an int, a list of ints, or a "start:stop[:step]" string
            (Python slice semantics, negative numbers count from the end).
        n_frames: length of the tracked sequence.
        default: indices used when ``spec`` is None.

    Returns:
        list of indices in ``0..n_frames-1``.
    """
    if spec is None:
        idx = list(default) if default is not None else list(range(n_frames))
    elif isinstance(spec, str):
        try:
            parts = [int(p) if p.strip() else None for p in spec.split(":")]
            idx = list(range(n_frames))[slice(*parts)]
        except (ValueError, TypeError) as err:
            raise ReenactError(f"frames='{spec}' is not 'start:stop[:step]'; e.g. frames='0:50'") from err
    elif isinstance(spec, int):
        idx = [spec]
    else:
        idx = [int(i) for i in spec]
    idx = [i + n_frames if i < 0 else i for i in idx]
    bad = [i for i in idx if not 0 <= i < n_frames]
    if bad or not idx:
        raise ReenactError(
            f"frames {spec!r} select {bad or 'nothing'} of {n_frames} frames; use 0..{n_frames - 1}"
        )
    return idx


def reference_frame(frames, how: str | int = "neutral") -> int:
    """Pick a reference frame of a tracked sequence.

    Args:
        frames: tracked parameters (see :func:`param_dict`); "frontal" needs the camera ``R``, ``t``.
        how: "first"; "neutral" (smallest expression norm; zero is neutral for ICT and FLAME); "frontal"
            (face direction R_head @ +z closest to the direction towards the camera); or a frame index.

    Returns:
        The frame index.
    """
    p = param_dict(frames)
    n = p["expression"].shape[0]
    if isinstance(how, int) or (isinstance(how, str) and how.lstrip("-").isdigit()):
        return select_frames(int(how), n)[0]
    if how == "first":
        return 0
    if how == "neutral":
        return int(p["expression"].norm(dim=-1).argmin())
    if how == "frontal":
        if "R" not in p or "t" not in p:
            raise ReenactError("reference 'frontal' needs the camera R, t; use 'first' or 'neutral'")
        cam_centre = -(p["R"].T @ p["t"])  # (3,)
        forward = axis_angle_to_matrix(p["rotation"])[:, :, 2]  # (N,3) R_head @ (0,0,1)
        to_cam = torch.nn.functional.normalize(cam_centre - p["translation"], dim=-1)
        return int((forward * to_cam).sum(-1).argmax())
    raise ReenactError(f"unknown reference frame '{how}'; use first, neutral, frontal or a frame index")


def facing_rotation(R_cam: torch.Tensor, t_cam: torch.Tensor, head_position: torch.Tensor) -> torch.Tensor:
    """(3,) axis-angle head rotation that makes the face (+z) look straight into the camera, upright.

    The head's +z goes to the direction from ``head_position`` to the camera centre and its +y as close
    as possible to the camera's up direction (minus the camera's y axis).

    Args:
        R_cam: (3,3) world-to-camera rotation; t_cam: (3,); head_position: (3,) world position of the head.
    """
    z = torch.nn.functional.normalize(-(R_cam.T @ t_cam) - head_position, dim=0)
    x = torch.nn.functional.normalize(torch.linalg.cross(-R_cam[1], z, dim=0), dim=0)
    y = torch.linalg.cross(z, x, dim=0)
    return matrix_to_axis_angle(torch.stack([x, y, z], dim=1))


def reference_pose(frames, how: str | int = "frontal") -> tuple[torch.Tensor, torch.Tensor, int]:
    """A reference head pose of a tracked sequence.

    Args:
        frames: tracked parameters (see :func:`param_dict`).
        how: anything :func:`reference_frame` takes (that frame's pose), or "facing": the "frontal"
            frame's position with the head turned to look straight into the camera
            (:func:`facing_rotation`); needs the camera R, t.

    Returns:
        (rotation (3,), translation (3,), the frame index the position and joints come from).
    """
    p = param_dict(frames)
    if how == "facing":
        i = reference_frame(p, "frontal")
        return facing_rotation(p["R"], p["t"], p["translation"][i]), p["translation"][i], i
    i = reference_frame(p, how)
    return p["rotation"][i], p["translation"][i], i


def self_sequence(frames, indices: Sequence[int]) -> ParamSequence:
    """Self-reenactment: the subject's own tracked parameters at ``indices`` (e.g. the held-out frames).

    Args:
        frames: tracked parameters of N frames (see :func:`param_dict`).
        indices: frame indices to replay, in order.

    Returns:
        ParamSequence of len(indices) frames.
    """
    p = param_dict(frames)
    idx = torch.as_tensor(select_frames(list(indices), p["expression"].shape[0]), dtype=torch.long)
    return ParamSequence(*(p[k][idx].clone() for k in SEQUENCE_KEYS))


def _relative(rot: torch.Tensor, rot0: torch.Tensor, ref: torch.Tensor, frame: torch.Tensor | None):
    """Axis-angle (N,3): the motion rot_i rot0^T (expressed in ``frame``, a (3,3) rotation taking the
    source frame to the target frame, or None) applied on top of ``ref`` (3,)."""
    delta = axis_angle_to_matrix(rot) @ axis_angle_to_matrix(rot0).T  # (N,3,3) world-frame motion
    if frame is not None:
        delta = frame @ delta @ frame.T
    return matrix_to_axis_angle(delta @ axis_angle_to_matrix(ref))


def cross_sequence(
    source_params,
    target_frames,
    mode: str = "relative",
    expression_frame: str | int = "neutral",
    pose_frame: str | int = "frontal",
    translation_scale: float = 1.0,
    expression_range: tuple[float, float] | None = (0.0, 1.0),
) -> ParamSequence:
    """Cross-reenactment: drive the target avatar with another subject's tracked parameters.

    With ``mode="relative"`` (the default) the source's motion relative to its first frame is transferred:

    * expression: ``e_i = e_target_ref + (e_source_i - e_source_0)``, clamped to ``expression_range``
      (ICT blendshape weights live in [0,1]; pass None for FLAME's unbounded PCA coefficients);
    * rotation: ``R_i = D_i @ R_target_ref`` with ``D_i = R_source_i @ R_source_0^T`` the source's head
      motion, carried from the source's camera frame into the target's when both give a camera ``R``
      (``D_target = Rc_t^T Rc_s D_i Rc_s^T Rc_t``), so "turn left in the source video" stays "turn left";
    * translation: ``t_i = t_target_ref + translation_scale * Rc_t^T Rc_s (t_source_i - t_source_0)``;
    * FLAME joints (neck, jaw, eyes): per joint ``J_i = (J_source_i J_source_0^T) J_target_ref``.

    ``mode="expression_only"`` transfers the expression as above and holds the target's reference pose.
    ``mode="absolute"`` copies the source's parameters unchanged (the same person tracked in another video).

    Args:
        source_params: the driving sequence (see :func:`param_dict`), Ns frames, already cut to the
            frames to use; frame 0 is the source's reference.
        target_frames: the avatar's tracked parameters (``model.frames``).
        mode: "relative", "expression_only" or "absolute".
        expression_frame: target frame whose expression is the rest expression (see
            :func:`reference_frame`).
        pose_frame: the target pose the motion starts from (see :func:`reference_pose`).
        translation_scale: factor on the transferred translation (0 keeps the head in place).
        expression_range: (lo, hi) clamp of the expression coefficients, or None.

    Returns:
        ParamSequence of Ns frames.
    """
    src, tgt = param_dict(source_params), param_dict(target_frames)
    for key in ("expression", "joint_pose"):
        if src[key].shape[-1] != tgt[key].shape[-1]:
            raise ReenactError(
                f"source {key} has {src[key].shape[-1]} coefficients, the avatar's head model "
                f"{tgt[key].shape[-1]}; drive it with parameters tracked with the same head model"
            )
    if mode not in ("relative", "expression_only", "absolute"):
        raise ReenactError(f"unknown cross mode '{mode}'; use relative, expression_only or absolute")
    if mode == "absolute":
        seq = ParamSequence(*(src[k].clone() for k in SEQUENCE_KEYS))
    else:
        n = src["expression"].shape[0]
        e_ref = tgt["expression"][reference_frame(tgt, expression_frame)]
        expression = e_ref + (src["expression"] - src["expression"][0])
        rot_ref, trans_ref, ip = reference_pose(tgt, pose_frame)
        held = ParamSequence.hold(
            (rot_ref, trans_ref), expression, tgt["joint_pose"][ip].expand(n, -1).clone()
        )
        if mode == "expression_only":
            seq = held
        else:
            frame = tgt["R"].T @ src["R"] if "R" in src and "R" in tgt else None
            rotation = _relative(src["rotation"], src["rotation"][0], rot_ref, frame)
            dt = src["translation"] - src["translation"][0]
            if frame is not None:
                dt = dt @ frame.T
            translation = trans_ref + float(translation_scale) * dt
            joints = held.joint_pose
            if joints.shape[-1]:
                j_src = src["joint_pose"].reshape(n, -1, 3)
                j_ref = tgt["joint_pose"][ip].reshape(-1, 3)
                joints = torch.stack(
                    [_relative(j_src[:, j], j_src[0, j], j_ref[j], None) for j in range(j_ref.shape[0])], 1
                ).reshape(n, -1)
            seq = ParamSequence(expression, rotation, translation, joints)
    if expression_range is not None:
        seq.expression = seq.expression.clamp(*expression_range)
    return seq


def keyframe_curve(keys, n_frames: int) -> torch.Tensor:
    """A smooth curve through keyframes spread evenly over a sequence.

    Args:
        keys: a number (constant curve), or a list of K values placed at frames 0, (N-1)/(K-1), ..., N-1
            and joined with cosine easing (zero slope at every key).
        n_frames: N.

    Returns:
        (N,) float tensor.
    """
    values = torch.as_tensor([keys] if isinstance(keys, (int, float)) else list(keys), dtype=torch.float32)
    if values.numel() == 0:
        raise ReenactError("empty keyframe list; give a number or a list of values, e.g. [0, 30, -30, 0]")
    if values.numel() == 1 or n_frames == 1:
        return values[:1].expand(n_frames).clone()
    pos = torch.linspace(0, values.numel() - 1, n_frames)
    lo = pos.floor().long().clamp(max=values.numel() - 2)
    frac = pos - lo
    w = 0.5 - 0.5 * torch.cos(math.pi * frac)
    return values[lo] * (1 - w) + values[lo + 1] * w


def _euler_curves(n: int, yaw, pitch, roll) -> torch.Tensor | None:
    """(N,3,3) rotations R = Ry(yaw) Rx(pitch) Rz(roll) from keyframes in degrees, or None if all None."""
    if yaw is None and pitch is None and roll is None:
        return None
    angles = [keyframe_curve(0.0 if a is None else a, n) * (math.pi / 180) for a in (yaw, pitch, roll)]
    return axis_angle_to_matrix(euler_to_axis_angle(*angles))


def apply_head_pose(seq: ParamSequence, yaw=None, pitch=None, roll=None) -> ParamSequence:
    """Turn the head on top of each frame's pose: ``R_i = E_i @ R_i`` with E = Ry(yaw) Rx(pitch) Rz(roll).

    The extra rotation is about the head model's origin in world axes (+y up, +z out of the face): yaw
    turns the head left/right, pitch nods it, roll tilts it; translation is unchanged.

    Args:
        seq: N frames.
        yaw, pitch, roll: degrees, each None, a number or keyframes (see :func:`keyframe_curve`).

    Returns:
        A new ParamSequence.
    """
    E = _euler_curves(len(seq), yaw, pitch, roll)
    if E is None:
        return seq
    rotation = matrix_to_axis_angle(E @ axis_angle_to_matrix(seq.rotation))
    return ParamSequence(seq.expression, rotation, seq.translation, seq.joint_pose)


def apply_neck_pose(seq: ParamSequence, yaw=None, pitch=None, roll=None) -> ParamSequence:
    """Rotate the neck.

    FLAME (``joint_pose`` = neck, jaw, left eye, right eye): composes the rotation onto the neck joint,
    so the head turns on the neck and the shoulders/neck base stay put. ICT-FaceKit has no skeleton and no
    neck joint: "neck pose" then maps to the rigid head pose (exactly :func:`apply_head_pose`), which turns
    the whole mesh, neck included, about the model origin.

    Args:
        seq: N frames.
        yaw, pitch, roll: degrees, each None, a number or keyframes.

    Returns:
        A new ParamSequence.
    """
    if seq.joint_pose.shape[-1] < 3:
        return apply_head_pose(seq, yaw, pitch, roll)
    E = _euler_curves(len(seq), yaw, pitch, roll)
    if E is None:
        return seq
    neck = matrix_to_axis_angle(E @ axis_angle_to_matrix(seq.joint_pose[:, :3]))
    joints = torch.cat([neck, seq.joint_pose[:, 3:]], dim=1)
    return ParamSequence(seq.expression, seq.rotation, seq.translation, joints)
