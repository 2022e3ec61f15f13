"""Reenactment from a config: build the parameter sequence and cameras of a mode, render, write MP4 + PNGs.

Used by ``reenact.py``; works with any avatar implementing :class:`src.models.avatar.AvatarMixin` that
holds ``headmodel``, ``frames`` (:class:`~src.models.frame_params.FrameParams`) and ``image_size``.
Models that refine the tracked parameters during training (NHA's learnable identity/expression/pose
tables) are reenacted with the refined values, see :func:`avatar_params`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from src.core.layout import SubjectLayout
from src.headmodel.rotation import axis_angle_to_matrix
from src.reenact.cameras import orbit_cameras, parse_image_size, subject_cameras
from src.reenact.measure import measure_cross, reference_frames
from src.reenact.presets import mix_presets, preset_sequence, preset_vectors
from src.reenact.sequences import (
    ParamSequence,
    ReenactError,
    apply_head_pose,
    apply_neck_pose,
    cross_sequence,
    param_dict,
    reference_pose,
    select_frames,
    self_sequence,
)
from src.render import Cameras
from src.utils.io import to_uint8, write_json, write_npz
from src.utils.signals import check_stop
from src.utils.video import VideoWriter, write_frames

log = logging.getLogger(__name__)

MODES = ("self", "cross", "preset", "orbit")


def expression_range(headmodel) -> tuple[float, float] | None:
    """Valid range of expression coefficients: [0,1] for ICT blendshape weights, None (unbounded) else.

    A wrapper such as :class:`~src.headmodel.subdivide.SubdividedHeadModel` has the range of its ``base``.
    """
    from src.headmodel.ict import ICTHeadModel

    return (0.0, 1.0) if isinstance(getattr(headmodel, "base", headmodel), ICTHeadModel) else None


def load_source_params(source: str | Path, kind: str = "auto") -> dict[str, np.ndarray]:
    """Tracked parameters of a driving subject.

    Args:
        source: a subject folder (``tracking.npz`` or ``ground_truth/params.npz``) or an .npz file.
        kind: "auto" (tracking if present, else ground truth), "tracking" or "ground_truth".

    Returns:
        float32 arrays expression (N,Ne), rotation (N,3), translation (N,3), joint_pose (N,Nj), K, R, t.
    """
    path = Path(source)
    if path.suffix == ".npz":
        if not path.is_file():
            raise ReenactError(f"source parameters {path} not found; give a subject folder or an .npz file")
        with np.load(path) as z:
            return {k: z[k].astype(np.float32) for k in z.files}
    if not path.is_dir():
        raise ReenactError(f"source={path} is not a subject folder; set source=<folder with tracking.npz>")
    layout = SubjectLayout(path)
    return layout.read_params(layout.resolve_source(kind))


REFINABLE = ("identity", "expression", "rotation", "translation", "joint_pose")


def avatar_params(model) -> dict[str, torch.Tensor]:
    """The avatar's own parameters: identity, per-frame expression/rotation/translation/joint_pose, camera.

    ``model.avatar_params()`` is used when the model defines it. Otherwise the tracked ``model.frames``,
    where every entry of :data:`REFINABLE` that the model itself holds as a tensor of the same shape (a
    model that refines tracking while training, e.g. ``model.identity`` (Ni,) and ``model.expression``
    (N,Ne)) replaces the tracked one.

    Returns:
        dict of detached tensors: identity (Ni,), expression (N,Ne), rotation (N,3), translation (N,3),
        joint_pose (N,Nj), K (3,3), R (3,3), t (3,).
    """
    if callable(getattr(model, "avatar_params", None)):
        return {k: v.detach() for k, v in model.avatar_params().items()}
    p = param_dict(model.frames)
    for key in REFINABLE:
        own = getattr(model, key, None)
        if torch.is_tensor(own) and key in p and own.shape == p[key].shape and own.numel():
            p[key] = own.detach().float()
    return p


@torch.no_grad()
def head_center(model, pose: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """(3,) world centre of the bounding box of the personalised neutral mesh under ``pose``
    (rotation (3,), translation (3,))."""
    hm = model.headmodel
    rotation, translation = pose
    v = model.personalized_vertices(torch.zeros(1, hm.n_expression, device=rotation.device))[0]
    c = 0.5 * (v.min(0).values + v.max(0).values)
    return axis_angle_to_matrix(rotation) @ c + translation


def _mix(cfg: Mapping[str, Any]) -> dict[str, float]:
    mix = cfg.get("mix")
    if mix:
        return {str(k): float(v) for k, v in dict(mix).items()}
    if not cfg.get("preset"):
        raise ReenactError("mode=preset needs preset=<name> or mix={name: weight, ...}")
    return {str(cfg["preset"]): 1.0}


def check_config(cfg: Mapping[str, Any]) -> None:
    """Fail fast, before the checkpoint is loaded, on a bad mode, a missing source or unknown presets."""
    mode = cfg.get("mode")
    if mode not in MODES:
        raise ReenactError(f"unknown mode '{mode}'; use one of {list(MODES)}")
    if mode == "cross":
        if not cfg.get("source"):
            raise ReenactError(
                "mode=cross needs source=<subject folder or params .npz> of the driving subject"
            )
        if not Path(cfg["source"]).exists():
            raise ReenactError(f"source {cfg['source']} not found; give a subject folder or a params .npz")
    if mode == "preset" or (mode == "orbit" and (cfg.get("orbit") or {}).get("expression") == "preset"):
        presets = cfg.get("presets") or {}
        mix_presets({k: torch.zeros(1) for k in presets}, _mix(cfg), None)  # checks the names


@torch.no_grad()
def build_sequence(cfg: Mapping[str, Any], model, dm=None) -> tuple[ParamSequence, Cameras, dict[str, Any]]:
    """The parameters and cameras of a reenactment config (the keys of ``conf/reenact.yaml``).

    Args:
        cfg: mode, split/frames (self), source/source_params/source_frames/cross_mode/translation_scale
            (cross), preset/mix/n_frames/ramp (preset), orbit (orbit), reference, pose, neck, image_size,
            presets.
        model: an avatar (AvatarMixin with ``headmodel``, ``frames``, ``image_size``).
        dm: its data module (for the split and, when the model lacks it, the image size).

    Returns:
        (sequence of N frames, N cameras, info dict for reenact.json).
    """
    check_config(cfg)
    mode = cfg["mode"]
    frames, hm = avatar_params(model), model.headmodel
    n_frames = frames["expression"].shape[0]
    train_size = tuple(getattr(model, "image_size", None) or ())
    if len(train_size) != 2 or not all(train_size):
        if dm is None or dm.meta is None:
            raise ReenactError("the model holds no image size; pass its data module or set image_size=")
        train_size = (int(dm.meta["height"]), int(dm.meta["width"]))
    size = parse_image_size(cfg.get("image_size"), train_size)
    ref = cfg.get("reference") or {}
    ref_pose = reference_pose(frames, ref.get("pose", "facing"))
    pose_ref = ref_pose[2]
    erange = expression_range(hm)
    info: dict[str, Any] = {"mode": mode, "image_size": list(size)}

    if mode == "self":
        split = cfg.get("split") or "test"
        default = dm.splits.get(split) if dm is not None and dm.splits else None
        if cfg.get("frames") is None and default is None:
            raise ReenactError(f"no split '{split}' to replay; set frames=[...] or split=train/val/test")
        idx = select_frames(cfg.get("frames"), n_frames, default)
        seq = self_sequence(frames, idx)
        if erange is not None:
            seq.expression = seq.expression.clamp(*erange)
        info.update(frames=idx)
    elif mode == "cross":
        src = load_source_params(cfg["source"], cfg.get("source_params", "auto"))
        n_src = src["expression"].shape[0]
        sidx = select_frames(cfg.get("source_frames"), n_src)
        per_frame = ("expression", "rotation", "translation", "joint_pose")
        cut = {k: v[sidx] if k in per_frame and len(v) == n_src else v for k, v in src.items()}
        seq = cross_sequence(
            cut,
            frames,
            cfg.get("cross_mode", "relative"),
            ref.get("expression", "neutral"),
            ref.get("pose", "facing"),
            float(cfg.get("translation_scale", 1.0)),
            erange,
        )
        info.update(
            source=str(cfg["source"]), source_frames=sidx, cross_mode=cfg.get("cross_mode", "relative")
        )
    else:
        n = int(cfg.get("n_frames", 50))
        if n < 1:
            raise ReenactError(f"n_frames={n}; give at least 1 frame")
        orbit = cfg.get("orbit") or {}
        if mode == "preset":
            mix = _mix(cfg)
            expr = preset_sequence(
                preset_vectors(cfg["presets"], hm), mix, n, float(cfg.get("ramp", 0.25)), erange
            )
            info.update(mix=mix)
        elif orbit.get("expression", "neutral") == "preset":
            mix = _mix(cfg)
            expr = mix_presets(preset_vectors(cfg["presets"], hm), mix, erange)[None].expand(n, -1)
            info.update(mix=mix)
        elif orbit.get("expression", "neutral") == "reference":
            expr = frames["expression"][pose_ref].expand(n, -1)
        else:
            expr = torch.zeros(n, hm.n_expression)
        joints = frames["joint_pose"][pose_ref].expand(n, -1).clone()
        if mode == "preset" or orbit.get("expression", "neutral") != "reference":
            joints = torch.zeros_like(joints)  # FLAME: neutral neck, jaw and eyes unless held from a frame
        seq = ParamSequence.hold(ref_pose[:2], expr.to(frames["expression"]).clone(), joints)
        info.update(reference_pose=ref.get("pose", "facing"), reference_pose_frame=pose_ref)

    pose, neck = cfg.get("pose") or {}, cfg.get("neck") or {}
    seq = apply_head_pose(seq, pose.get("yaw"), pose.get("pitch"), pose.get("roll"))
    if any(neck.get(k) is not None for k in ("yaw", "pitch", "roll")) and hm.n_joint_pose < 3:
        log.info("%s has no neck joint: the neck pose is applied as the rigid head pose", type(hm).__name__)
    seq = apply_neck_pose(seq, neck.get("yaw"), neck.get("pitch"), neck.get("roll"))

    n = len(seq)
    cameras = subject_cameras(frames, n, train_size, size)
    if mode == "orbit":
        center = orbit.get("center")
        if center is None:
            center = head_center(model, ref_pose[:2])
        center = torch.as_tensor(center, dtype=torch.float32)
        cameras = orbit_cameras(
            cameras[0], n, float(orbit.get("yaw_range_deg", 30.0)), float(orbit.get("pitch_deg", 0.0)), center
        )
        info.update(orbit_center=center.tolist())
    info["n_frames"] = n
    return seq, cameras, info


@torch.no_grad()
def render_sequence(
    model,
    seq: ParamSequence,
    cameras: Cameras,
    batch_size: int = 8,
    progress: bool = True,
    identity: torch.Tensor | None = None,
    background: Any = None,
) -> Iterator[torch.Tensor]:
    """Render a sequence in batches with ``model.render_params``.

    Args:
        identity: (Ni,) identity; default the avatar's own (see :func:`avatar_params`).
        background: None (the avatar's own: a video's plate or its learned background), an RGB colour
            (3 floats in [0,1]) the avatar is composited over, or "transparent" (RGBA output).

    Yields:
        (B,3,H,W) images in [0,1] ((B,4,H,W) for "transparent"), in order.
    """
    device = model.frames.expression.device
    seq, cameras = seq.to(device), cameras.to(device)
    identity = (avatar_params(model)["identity"] if identity is None else identity).to(device)
    starts = range(0, len(seq), max(1, int(batch_size)))
    for s in tqdm(starts, desc="reenact", unit="batch", disable=not progress):
        check_stop("reenact (rendering)")
        part, cams = seq[s : s + batch_size], cameras[s : s + batch_size]
        joint = part.joint_pose if part.joint_pose.shape[-1] else None
        out = model.render_params(identity, part.expression, part.rotation, part.translation, cams, joint)
        yield composite(out, background)


def composite(out: dict[str, torch.Tensor], background: Any) -> torch.Tensor:
    """The rendered image over a chosen background.

    The avatar's coverage (mesh avatars) or predicted matte (image avatars) is its alpha; at hard edges the
    result is exact, along anti-aliased edges a trace of the avatar's own background remains.

    Args:
        out: ``render_params`` outputs: "image" (B,3,H,W), "coverage" or "matte" (B,1,H,W).
        background: see :func:`render_sequence`.
    """
    image = out["image"].clamp(0, 1)
    if background is None:
        return image
    alpha = out.get("coverage", out.get("matte"))
    if alpha is None:
        raise ReenactError("this avatar gives no coverage or matte; use background=null")
    alpha = alpha.clamp(0, 1)
    if isinstance(background, str):
        if background != "transparent":
            raise ReenactError(f"background={background!r}; use null, transparent or [r, g, b] in [0, 1]")
        return torch.cat([image, alpha], dim=1)
    colour = torch.as_tensor([float(c) for c in background], dtype=image.dtype, device=image.device)
    if colour.shape != (3,) or colour.min() < 0 or colour.max() > 1:
        raise ReenactError(f"background={list(background)}: give three values in [0, 1], e.g. [1, 1, 1]")
    return image * alpha + colour.view(1, 3, 1, 1) * (1 - alpha)


def reenact(model, dm, cfg: Mapping[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Build, render and write one reenactment.

    Writes ``out_dir/<name>.mp4`` (H.264, yuv420p), ``out_dir/frames/000000.png``... (when
    ``write_frames``), ``out_dir/sequence.npz`` (the rendered parameters and cameras) and
    ``out_dir/reenact.json``.

    Returns:
        The info dict (mode, n_frames, image_size, fps, paths, ...).
    """
    out = Path(out_dir)
    seq, cameras, info = build_sequence(cfg, model, dm)
    fps = cfg.get("fps") or (dm.meta.get("fps") if dm is not None and dm.meta else None) or 25.0
    video_path = out / f"{cfg.get('name') or info['mode']}.mp4"
    measure = info["mode"] == "cross" and bool((cfg.get("measure") or {}).get("enabled", False))
    kept: list[np.ndarray] = []
    i = 0
    with VideoWriter(video_path, float(fps), int(cfg.get("crf", 18))) as video:
        for images in render_sequence(
            model, seq, cameras, int(cfg.get("batch_size", 8)), cfg.get("progress", True),
            background=cfg.get("background"),
        ):  # fmt: skip
            batch = to_uint8(images.permute(0, 2, 3, 1))  # (B,C,H,W) -> (B,H,W,C)
            if cfg.get("write_frames", True):
                write_frames(out / "frames", batch, start=i)  # RGBA PNGs for a transparent background
            if batch.shape[-1] == 4:  # the MP4 has no alpha: the avatar over black
                rgba = images.permute(0, 2, 3, 1)
                batch = to_uint8(rgba[..., :3] * rgba[..., 3:])
            for frame in batch:
                video.append(frame)
            if measure:
                kept.append(np.asarray(batch))
            i += len(batch)
    cams = {k: getattr(cameras, k).detach().cpu().numpy() for k in ("K", "R", "t")}
    write_npz(out / "sequence.npz", **seq.numpy(), **cams)
    info.update(fps=float(fps), video=str(video_path))
    info["frames_dir"] = str(out / "frames") if cfg.get("write_frames", True) else None
    if measure:
        metrics = measure_cross_run(model, dm, cfg, seq, cameras, np.concatenate(kept), info)
        write_json(out / "cross_metrics.json", metrics)
        info["cross_metrics"] = str(out / "cross_metrics.json")
        log.info("cross-reenactment: %s", {k: v for k, v in metrics.items() if isinstance(v, float)})
    write_json(out / "reenact.json", info)
    log.info("wrote %d frames to %s", info["n_frames"], video_path)
    return info


def measure_cross_run(
    model, dm, cfg: Mapping[str, Any], seq: ParamSequence, cameras: Cameras, frames: np.ndarray, info: dict
) -> dict[str, Any]:
    """Measure a rendered cross-reenactment (:func:`src.reenact.measure.measure_cross`).

    The avatar's identity comes from its own training frames (``dm``), the driver's from the source
    subject's frames (when ``source`` is a subject folder; a bare .npz has no images, so no driver CSIM),
    the driver's expression from the source parameters of the rendered frames.

    Args:
        frames: (N,H,W,3) uint8 rendered frames.
        info: the reenactment's info dict (source_frames).
    """
    mcfg = cfg.get("measure") or {}
    if dm is None or not getattr(dm, "splits", None):
        raise ReenactError("measuring a cross-reenactment needs the avatar's data (its training frames)")
    count = int(mcfg.get("reference_frames", 16))
    avatar_refs = reference_frames(dm.layout, dm.splits["train"], count)
    sidx = list(info["source_frames"])
    source = Path(cfg["source"])
    driver = SubjectLayout(source) if source.is_dir() else None
    has_frames = driver is not None and driver.landmarks68_path.is_file() and (source / "frames").is_dir()
    driver_refs = reference_frames(driver, sidx, count) if has_frames else None  # a params file: no images
    src = load_source_params(source, cfg.get("source_params", "auto"))
    identity = avatar_params(model)["identity"].cpu()
    retrack = {
        "headmodel": model.headmodel.cpu() if hasattr(model.headmodel, "cpu") else model.headmodel,
        "identity": identity, "cameras": cameras.to("cpu"), "rotation": seq.rotation.cpu(),
        "translation": seq.translation.cpu(), "tracking": mcfg.get("tracking") or {},
        "steps": int(mcfg.get("retrack_steps", 300)),
    }  # fmt: skip
    res = measure_cross(frames, avatar_refs, driver_refs, src["expression"][sidx], retrack)
    res.update(
        avatar_frames=len(avatar_refs[0]), driver_frames=0 if driver_refs is None else len(driver_refs[0])
    )
    return res
