"""Optional photometric refinement of a landmark fit with the project's differentiable renderer.

The face region of the head model is rendered with one learned colour per vertex (shared by all frames)
under learned 2nd-order SH lighting and compared (L1) with the frames inside the foreground mask, on random
batches of frames at a reduced resolution; the landmark objective of the fit stays in the loss so the
pose cannot drift. Costly on CPU (a full-mesh render per frame and step): off by default.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from src.core.layout import SubjectLayout
from src.render import MeshRenderer, sh_ambient
from src.tracking.fitter import Tracker
from src.utils.signals import check_stop

log = logging.getLogger(__name__)


def _load_frames(
    layout: SubjectLayout, n: int, res: int, use_masks: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,3,res,res) frames and (N,1,res,res) foreground masks (ones without masks), in [0,1]."""
    imgs, masks = [], []
    for i in range(n):
        img = torch.from_numpy(layout.read_image("frames", i)).permute(2, 0, 1).float() / 255
        imgs.append(F.interpolate(img[None], size=(res, res), mode="area")[0])
        if use_masks:
            m = torch.from_numpy(layout.read_image("masks", i)).float()[None, None] / 255
            masks.append(F.interpolate(m, size=(res, res), mode="area")[0])
        else:
            masks.append(torch.ones(1, res, res))
    return torch.stack(imgs), torch.stack(masks)


def photometric_refine(
    tk: Tracker, layout: SubjectLayout, headmodel, pcfg: dict[str, Any]
) -> dict[str, float]:
    """Refine ``tk`` in place with a photometric term.

    Args:
        tk: a fitted :class:`Tracker`.
        layout: the subject (frames, and masks if available).
        headmodel: the head model of ``tk``.
        pcfg: ``tracking.photometric`` options (steps, weight, resolution, batch_frames, lr_scale).

    Returns:
        The final loss terms (floats), including ``photometric``.
    """
    meta = layout.read_meta()
    n, res = tk.expression.shape[0], int(pcfg["resolution"])
    use_masks = bool(meta["available"].get("masks"))
    if not use_masks:
        log.warning(
            "photometric refinement without foreground masks: comparing inside the rendered face only"
        )
    frames, fg = _load_frames(layout, n, res, use_masks)
    face_sel = headmodel.region_face_mask(["face"]) if "face" in headmodel.region_names else None
    faces = headmodel.faces if face_sel is None else headmodel.faces[face_sel]
    colors = torch.nn.Parameter(torch.full((headmodel.template.shape[0], 3), 0.0))
    sh = torch.nn.Parameter(sh_ambient(1.0)[0].clone())
    renderer = MeshRenderer()
    scale = float(pcfg["lr_scale"])
    groups = [{**g, "lr": g["lr"] * scale} for g in tk.stage_params("full")]
    opt = torch.optim.Adam([*groups, {"params": [colors], "lr": 0.05}, {"params": [sh], "lr": 0.02}])
    gen = torch.Generator().manual_seed(0)
    terms: dict[str, float] = {}
    for _ in tqdm(range(int(pcfg["steps"])), desc="photometric refinement", unit="step"):
        check_stop("tracking (photometric refinement)")
        idx = torch.randperm(n, generator=gen)[: int(pcfg["batch_frames"])]
        b = len(idx)
        jp = tk.joint_pose[idx] if tk.joint_pose.shape[1] else None
        verts = headmodel(tk.identity[None].expand(b, -1), tk.expression[idx], tk.rotation[idx],
                          tk.translation[idx], jp)  # fmt: skip
        cams = tk.cameras().resized((res, res))
        out = renderer(verts, faces, cams, vertex_colors=torch.sigmoid(colors), sh=sh, soft_alpha=False)
        w = out["mask"].float() * fg[idx]
        photo = ((out["rgb"] - frames[idx]).abs() * w).sum() / (3 * w.sum()).clamp_min(1.0)
        total, parts = tk.loss()
        loss = total + float(pcfg["weight"]) * photo
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tk.project_bounds()
        terms = {"total": float(loss), "photometric": float(photo), **{k: float(v) for k, v in parts.items()}}
    return {k: float(np.round(v, 6)) for k, v in terms.items()}
