"""Photometric refinement of a landmark fit with the project's differentiable renderer.

The chosen regions of the head model (``regions``, default the face) are rendered with one learned colour
per vertex (shared by all frames) under learned 2nd-order SH lighting and compared (L1) with the frames
inside the person mask, on random batches of frames at a reduced resolution. Two phases:

1. ``texture_steps``: colours and lighting only, the fit frozen (a grey start would pull the pose and
   expression towards whatever makes a grey face match);
2. ``steps``: everything together; the landmark objective of the fit stays in the loss so the pose cannot
   drift, and the photometric term (``weight``) adds what landmarks miss (brows, lids, lips).

Padded crop pixels and occluders (``valid.png``, ``occlusion/``) count nowhere. Costly on CPU (a render
per frame and step), so its steps are sized in ``conf/tracking/default.yaml``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from src.core.layout import SubjectLayout
from src.core.streams import read_valid
from src.render import MeshRenderer, sh_ambient
from src.tracking.fitter import Tracker
from src.utils.signals import check_stop

log = logging.getLogger(__name__)


def _load_frames(layout: SubjectLayout, meta: dict, n: int, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames and pixel weights at ``res``.

    Returns:
        (N,3,res,res) frames in [0,1] and (N,1,res,res) weights in [0,1]: the person mask (ones without
        masks) times crop validity times the complement of the occluder mask.
    """
    use_masks = bool(meta["available"].get("masks"))
    if not use_masks:
        log.warning("photometric refinement without person masks: comparing inside the rendered face only")
    valid = read_valid(layout, meta)
    if valid is None:
        base = torch.ones(1, 1, int(meta["height"]), int(meta["width"]))
    else:
        base = torch.from_numpy(valid.astype(np.float32))[None, None]
    occluded = set((meta.get("occlusion") or {}).get("frames", []))

    def down(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(res, res), mode="area")[0]

    imgs, weights = [], []
    for i in range(n):
        imgs.append(
            down(torch.from_numpy(layout.read_image("frames", i)).permute(2, 0, 1)[None].float() / 255)
        )
        w = base.clone()
        if use_masks:
            w = w * torch.from_numpy(layout.read_image("masks", i)).float()[None, None] / 255
        if i in occluded:
            w = w * (1 - torch.from_numpy(layout.read_image("occlusion", i)).float()[None, None] / 255)
        weights.append(down(w))
    return torch.stack(imgs), torch.stack(weights)


def photometric_refine(
    tk: Tracker, layout: SubjectLayout, headmodel, pcfg: dict[str, Any]
) -> dict[str, float]:
    """Refine ``tk`` in place with a photometric term (module docstring).

    Args:
        tk: a fitted :class:`Tracker`.
        layout: the subject (frames; masks, valid.png and occlusion/ where present).
        headmodel: the head model of ``tk``.
        pcfg: ``tracking.photometric`` options (texture_steps, steps, weight, resolution, batch_frames,
            lr_scale, regions).

    Returns:
        The final loss terms (floats), including ``photometric``.
    """
    meta = layout.read_meta()
    n, res = tk.expression.shape[0], int(pcfg["resolution"])
    frames, pix_w = _load_frames(layout, meta, n, res)
    regions = [r for r in pcfg.get("regions") or ["face"] if r in headmodel.region_names]
    faces = headmodel.faces[headmodel.region_face_mask(regions)] if regions else headmodel.faces
    colors = torch.nn.Parameter(torch.zeros(headmodel.template.shape[0], 3))
    sh = torch.nn.Parameter(sh_ambient(1.0)[0].clone())
    renderer = MeshRenderer()
    batch = min(int(pcfg["batch_frames"]), n)
    gen = torch.Generator().manual_seed(0)

    def photo_term(idx: torch.Tensor) -> torch.Tensor:
        jp = tk.joint_pose[idx] if tk.joint_pose.shape[1] else None
        verts = headmodel(tk.identity[None].expand(len(idx), -1), tk.expression[idx], tk.rotation[idx],
                          tk.translation[idx], jp)  # fmt: skip
        out = renderer(verts, faces, tk.cameras().resized((res, res)), vertex_colors=torch.sigmoid(colors),
                       sh=sh, soft_alpha=False)  # fmt: skip
        w = out["mask"].float() * pix_w[idx]
        return ((out["rgb"] - frames[idx]).abs() * w).sum() / (3 * w.sum()).clamp_min(1.0)

    texture_opt = torch.optim.Adam([{"params": [colors], "lr": 0.1}, {"params": [sh], "lr": 0.05}])
    tk.requires_grad_(False)  # the fit is frozen while the texture forms: keep it out of the graph
    for _ in tqdm(range(int(pcfg.get("texture_steps", 0))), desc="photometric: texture", unit="step"):
        check_stop("tracking (photometric texture)")
        loss = photo_term(torch.randperm(n, generator=gen)[:batch])
        texture_opt.zero_grad(set_to_none=True)
        loss.backward()
        texture_opt.step()
    tk.requires_grad_(True)

    scale = float(pcfg["lr_scale"])
    groups = [{**g, "lr": g["lr"] * scale} for g in tk.stage_params("full")]
    opt = torch.optim.Adam([*groups, {"params": [colors], "lr": 0.05}, {"params": [sh], "lr": 0.02}])
    steps = int(pcfg["steps"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=0.0)
    terms: dict[str, float] = {}
    for _ in tqdm(range(steps), desc="photometric refinement", unit="step"):
        check_stop("tracking (photometric refinement)")
        photo = photo_term(torch.randperm(n, generator=gen)[:batch])
        total, parts = tk.loss()
        loss = total + float(pcfg["weight"]) * photo
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        tk.project_bounds()
        terms = {"total": float(loss), "photometric": float(photo), **{k: float(v) for k, v in parts.items()}}
    return {k: float(np.round(v, 6)) for k, v in terms.items()}
