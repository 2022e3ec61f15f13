"""Render the synthetic subject into the standard subject layout (see src/core/layout.py).

Resumable: meta.json is written first with ``complete: false`` and a hash of the configuration;
a re-run with the same configuration skips frames already on disk, and meta.json is rewritten with
``complete: true`` at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from src.core.layout import SEG_LABELS, SubjectLayout
from src.datamodules.synthetic.texture import bake_texture
from src.datamodules.synthetic.trajectory import make_trajectory
from src.headmodel.base import HeadModelError
from src.headmodel.rotation import euler_to_axis_angle
from src.render import (
    Cameras,
    MeshRenderer,
    box_filter,
    center_samples,
    intrinsics_from_fov,
    look_at,
    supersample_cameras,
)
from src.utils.io import to_uint8, write_npy, write_npz, write_png

log = logging.getLogger(__name__)

# bump when a code change alters the rendered subject, so cached renders are regenerated
GENERATOR_VERSION = 2


def config_hash(cfg: dict[str, Any]) -> str:
    """Stable short hash of a JSON-able configuration and the generator version."""
    blob = json.dumps({"generator_version": GENERATOR_VERSION, **cfg}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _background(h: int, w: int, rng: np.random.Generator) -> torch.Tensor:
    """A smooth studio-like backdrop (3,H,W)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    top = torch.tensor(rng.uniform(0.35, 0.75, 3), dtype=torch.float32)
    bottom = top * rng.uniform(0.55, 0.8)
    bg = top[:, None, None] * (1 - yy) + bottom[:, None, None] * yy
    cx, cy = rng.uniform(0.2, 0.8, 2)
    glow = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.15)
    return (bg + 0.08 * glow).clamp(0, 1)


def _shade(
    albedo: torch.Tensor, normals: torch.Tensor, light_dir: torch.Tensor, ambient: float, diffuse: float
):
    """Lambert shading in camera space. albedo, normals (B,3,H,W); light_dir (3,) towards the light."""
    cos = (normals * light_dir[None, :, None, None]).sum(1, keepdim=True).clamp_min(0)
    return albedo * (ambient + diffuse * cos)


def generate_subject(
    out_dir: str | Path,
    headmodel: torch.nn.Module,
    resolution: int = 128,
    n_frames: int = 100,
    fps: float = 25.0,
    seed: int = 0,
    identity_std: float = 0.8,
    texture_size: int = 512,
    supersample: int = 2,
    fov_deg: float = 24.0,
    camera_distance: float = 0.72,
    light_dir: tuple[float, float, float] = (-0.4, -0.5, -0.75),
    ambient: float = 0.45,
    diffuse: float = 0.7,
    save_vertices: bool = True,
    batch_size: int = 8,
    trajectory: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Render a talking, smiling, blinking, head-turning subject with full ground truth.

    Args:
        out_dir: subject folder to write.
        headmodel: an ICT head model instance.
        resolution: output frame size (square, pixels).
        n_frames: number of frames.
        fps: frame rate recorded in meta.json and used by the trajectory.
        seed: seed for identity, texture, lighting, background and motion.
        identity_std: standard deviation of the identity coefficients.
        texture_size: albedo atlas resolution.
        supersample: render at this factor and box-filter down (anti-aliased frames and soft masks).
        fov_deg: vertical field of view of the fixed camera.
        camera_distance: camera distance from the head centre (metres).
        light_dir: direction towards the light in camera coordinates (x right, y down, z forward).
        ambient, diffuse: Lambert shading weights.
        save_vertices: also write ground_truth/vertices.npy (N,V,3).
        batch_size: frames rendered at once.
        trajectory: extra keyword arguments of :func:`make_trajectory`.
        config: the configuration to hash for cache validation (defaults to the arguments).

    Returns:
        The meta dict written to meta.json.
    """
    if not hasattr(headmodel, "material_names"):  # the albedo is painted per ICT material
        raise HeadModelError(
            f"the synthetic subject is rendered with ICT-FaceKit, not {type(headmodel).__name__}: render it "
            "with headmodel=ict, then track it with yours: python -m src.tracking root=<subject> headmodel=.."
        )
    layout = SubjectLayout(Path(out_dir))
    cfg = config or {
        "resolution": resolution, "n_frames": n_frames, "fps": fps, "seed": seed,
        "identity_std": identity_std,
        "texture_size": texture_size, "supersample": supersample, "fov_deg": fov_deg,
        "camera_distance": camera_distance, "light_dir": list(light_dir), "ambient": ambient,
        "diffuse": diffuse, "trajectory": trajectory or {},
    }  # fmt: skip
    digest = config_hash(cfg)
    resume = False
    if layout.meta_path.exists():
        try:
            old = json.loads(layout.meta_path.read_text())
            resume = old.get("config_hash") == digest
        except json.JSONDecodeError:
            resume = False
    meta = {
        "complete": False, "source": "synthetic", "config_hash": digest, "config": cfg,
        "n_frames": n_frames, "height": resolution, "width": resolution, "fps": fps,
        "head_model": type(headmodel).__name__, "seg_labels": SEG_LABELS,
        "available": {"masks": True, "segmentation": True, "normals": True, "landmarks68": True,
                      "landmarks478": False, "tracking": False, "ground_truth": True},
        "landmarks68_source": "ground_truth_projection",
    }  # fmt: skip
    layout.write_meta(meta)

    rng = np.random.default_rng(seed)
    identity = torch.from_numpy(rng.normal(0, identity_std, headmodel.n_identity).astype(np.float32))
    traj = make_trajectory(
        list(headmodel.expression_names), n_frames, fps=fps, seed=seed, **(trajectory or {})
    )
    expression = torch.from_numpy(traj["expression"])
    rotation = euler_to_axis_angle(*(torch.from_numpy(traj[k]) for k in ("yaw", "pitch", "roll")))
    translation = torch.from_numpy(traj["translation"])

    albedo, labels = bake_texture(headmodel, identity, texture_size, seed)
    write_png(
        layout.gt_albedo_path,
        to_uint8(albedo.permute(1, 2, 0)),
    )

    with torch.no_grad():
        neutral = headmodel.canonical(identity[None], torch.zeros(1, headmodel.n_expression))[0]
    top, chin = neutral[:, 1].max(), headmodel.landmarks(neutral[None])[0, 8, 1]
    centre_y = float(0.5 * (top + chin - 0.05))
    eye = torch.tensor([[0.0, centre_y, camera_distance]])
    R, t = look_at(eye, torch.tensor([[0.0, centre_y, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]]))
    K = intrinsics_from_fov(fov_deg, resolution, resolution).reshape(3, 3)

    keep = ~headmodel.region_face_mask(headmodel.hidden_regions)  # ICT: transparent overlays, eyelashes
    faces = headmodel.faces[keep]
    face_uvs = headmodel.face_uvs[keep]
    renderer = MeshRenderer()
    bg = _background(resolution, resolution, rng)
    ldir = F.normalize(torch.tensor(light_dir, dtype=torch.float32), dim=0)
    tex = albedo[None]
    lab_tex = labels[None, None].float()

    all_lmk = np.zeros((n_frames, 68, 2), np.float32)
    all_lmk3d = np.zeros((n_frames, 68, 3), np.float32)
    all_verts = np.zeros((n_frames, neutral.shape[0], 3), np.float32) if save_vertices else None
    for start in tqdm(range(0, n_frames, batch_size), desc="synthetic subject", unit="batch"):
        sl = slice(start, min(start + batch_size, n_frames))
        b = sl.stop - sl.start
        with torch.no_grad():
            verts = headmodel(identity[None].expand(b, -1), expression[sl], rotation[sl], translation[sl])
            lmk3d = headmodel.landmarks(verts)
            cams = Cameras(
                K[None].expand(b, 3, 3), R.expand(b, 3, 3), t.expand(b, 3), (resolution, resolution)
            )
            all_lmk[sl] = cams.project(lmk3d).numpy()
            all_lmk3d[sl] = lmk3d.numpy()
            if all_verts is not None:
                all_verts[sl] = verts.numpy()
            done = all(
                layout.frame_path(k, sl.stop - 1).exists()
                for k in ("frames", "masks", "segmentation", "normals")
            )
            if resume and done:
                continue
            cams_ss = supersample_cameras(cams, supersample)
            out = renderer(verts, faces, cams_ss, uv=(headmodel.uvs, face_uvs), soft_alpha=False)
            grid = out["uv"].permute(0, 2, 3, 1) * 2 - 1
            grid = torch.stack([grid[..., 0], -grid[..., 1]], -1)  # v up -> texture row 0 at v = 1
            col = F.grid_sample(tex.expand(b, -1, -1, -1), grid, mode="bilinear", align_corners=False)
            lab = F.grid_sample(lab_tex.expand(b, -1, -1, -1), grid, mode="nearest", align_corners=False)
            mask = out["mask"].float()
            shaded = _shade(col, out["normals"], ldir, ambient, diffuse).clamp(0, 1) * mask
            alpha = box_filter(mask, supersample)
            rgb = box_filter(shaded, supersample) + (1 - alpha) * bg[None]
            seg = center_samples(lab * mask, supersample)[:, 0].round().long()
            nrm = center_samples(out["normals"] * mask, supersample)
            nmask = center_samples(mask, supersample)
        for j in range(b):
            i = sl.start + j
            write_png(layout.frame_path("frames", i), to_uint8(rgb[j].permute(1, 2, 0)))
            write_png(layout.frame_path("masks", i), to_uint8(alpha[j, 0]))
            write_png(layout.frame_path("segmentation", i), seg[j].numpy().astype(np.uint8))
            write_png(
                layout.frame_path("normals", i), to_uint8(((nrm[j] + 1) / 2 * nmask[j]).permute(1, 2, 0))
            )

    write_npy(layout.landmarks68_path, all_lmk)
    write_npy(layout.gt_landmarks3d_path, all_lmk3d)
    if all_verts is not None:
        write_npy(layout.gt_vertices_path, all_verts)
    write_npz(
        layout.gt_params_path,
        identity=identity.numpy(), expression=expression.numpy(), rotation=rotation.numpy(),
        translation=translation.numpy(), joint_pose=np.zeros((n_frames, 0), np.float32),
        K=K.numpy(), R=R[0].numpy(), t=t[0].numpy(),
    )  # fmt: skip
    meta["complete"] = True
    layout.write_meta(meta)
    return meta
