"""Batched landmark tracking: one identity, per-frame expression and head pose, a shared focal length.

Camera convention of the fit: a fixed camera on the +z axis looking at the origin (the same convention
as the synthetic subject), ``R = diag(1,-1,-1)``, ``t = (0,0,D)`` with D the median head distance found
by the rigid initialisation, square pixels and the principal point at the image centre. The head moves:
``X_world = R_head(rotation) @ v + translation``, so a frontal head has a rotation near zero.

The objective, over all frames at once (Adam, two stages: rigid + focal, then everything):

- robust (Huber) 2D reprojection of the landmarks, in pixels at 256 px: either the 68 iBUG points, whose
  jaw contour (0-16) is down-weighted for detected landmarks (detectors follow the occluding contour, the
  model's points are fixed vertices), or FaceMesh's 478 points through the head model's dense embedding
  (:mod:`src.headmodel.dense`), each with its calibrated weight (contour points count little);
- Gaussian prior on identity, L1 + L2 prior on expression (ICT weights are kept in [0,1] by projection),
  L2 prior on joint pose (FLAME), a log-focal prior;
- temporal smoothness of rotation, translation and expression between consecutive frames.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from src.headmodel.dense import IRIS, pose_offsets
from src.headmodel.rotation import axis_angle_to_matrix, matrix_to_axis_angle
from src.render import Cameras
from src.utils.signals import check_stop

CAM_R = torch.diag(torch.tensor([1.0, -1.0, -1.0]))


class LandmarkModel(nn.Module):
    """The landmarks (L = 68, or 478 with ``dense``) of a head model as a function of its parameters.

    Linear models without joints (ICT) get a fast path: the landmark rows of the template and bases are
    precomputed, so a step costs O(N * L * (Ni + Ne)) instead of evaluating every vertex.

    With a gaze rig (:mod:`src.headmodel.gaze`) the iris points turn with the eyeballs; the few lid-margin
    points the calibration put on an eyeball's visible rim stay with the lids (unlike
    ``headmodel.landmarks478`` of turned eyes, which carries them along).

    Args:
        headmodel: a HeadModel.
        dense: use FaceMesh's 478 points (``headmodel.landmarks478``) instead of the 68.
    """

    def __init__(self, headmodel: nn.Module, dense: bool = False) -> None:
        super().__init__()
        self.headmodel = headmodel
        self.dense = bool(dense)
        self.points = headmodel.landmarks478 if self.dense else headmodel.landmarks
        self.linear = (
            getattr(headmodel, "n_joint_pose", 0) == 0
            and hasattr(headmodel, "identity_basis")
            and hasattr(headmodel, "expression_basis")
        )
        # FaceMesh's iris points lie on the eyeballs: with a gaze rig they turn with the eyeLook weights.
        # Lid-margin points calibrated onto the eyeball's visible rim stay with the lids.
        rig = getattr(headmodel, "gaze", None) if self.dense else None
        eyes = headmodel.point_eyes(headmodel.dense_faces) if rig is not None else None
        if eyes is not None:
            eyes = torch.where(torch.isin(torch.arange(len(eyes)), torch.tensor(IRIS)), eyes, -1)
        self.gaze = rig if eyes is not None and bool((eyes >= 0).any()) else None
        self.register_buffer("point_eye", eyes, persistent=False)
        off = getattr(headmodel, "dense_offsets", None) if self.dense else None
        self.register_buffer("offsets", None if off is None else off.detach().float(), persistent=False)
        if self.linear:
            with torch.no_grad():
                self.register_buffer("tmpl", self.points(headmodel.template[None])[0], persistent=False)
                self.register_buffer("idb", self.points(headmodel.identity_basis), persistent=False)
                self.register_buffer("exb", self.points(headmodel.expression_basis), persistent=False)

    def canonical(self, identity: torch.Tensor, expression: torch.Tensor, joint_pose=None) -> torch.Tensor:
        """(N,L,3) unposed landmarks for identity (Ni,), expression (N,Ne), joint_pose (N,Nj) or None."""
        if self.linear:
            base = self.tmpl + torch.einsum("i,ilc->lc", identity, self.idb)
            lm = base + torch.einsum("ne,elc->nlc", expression, self.exb)
            if self.gaze is not None:
                lm = self.gaze.apply(lm, self.point_eye, identity[None].expand(len(lm), -1), expression)
            return lm
        n = expression.shape[0]
        verts = self.headmodel.canonical(identity[None].expand(n, -1), expression, joint_pose)
        return self.points(verts)

    def forward(self, identity, expression, rotation, translation, joint_pose=None) -> torch.Tensor:
        """(N,L,3) posed landmarks in the world frame (metres); dense points with calibrated
        pose-dependent offsets get them (:func:`src.headmodel.dense.pose_offsets`)."""
        lm = self.canonical(identity, expression, joint_pose)
        if self.offsets is not None:
            lm = lm + pose_offsets(self.offsets, rotation)
        return lm @ axis_angle_to_matrix(rotation).transpose(1, 2) + translation[:, None]


def fit_cameras(focal: torch.Tensor | float, distance: torch.Tensor | float, size: int) -> Cameras:
    """The fit's camera (see the module docstring) for square images of side ``size``.

    Args:
        focal: focal length in pixels (a tensor keeps its gradient).
        distance: camera distance D in metres (likewise).
        size: image side in pixels; the principal point is the image centre.

    Returns:
        One camera (batch 1) whose :meth:`Cameras.project` is the fit's projection.
    """
    f = torch.as_tensor(focal, dtype=torch.float32)
    d = torch.as_tensor(distance, dtype=torch.float32)
    zero, one, c = f.new_zeros(()), f.new_ones(()), f.new_tensor(size / 2)
    K = torch.stack([torch.stack([f, zero, c]), torch.stack([zero, f, c]), torch.stack([zero, zero, one])])
    return Cameras(K, CAM_R.to(f), torch.stack([zero, zero, d]), (size, size))


def camera_matrices(focal: float, distance: float, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K (3,3), R (3,3), t (3,) of the fit's camera, as float32 arrays (for tracking.npz)."""
    cams = fit_cameras(float(focal), float(distance), size)
    return cams.K[0].numpy(), cams.R[0].numpy(), cams.t[0].numpy()


def rigid_init(
    canon: np.ndarray, obs: np.ndarray, focal: float, size: int, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-frame PnP of a fixed shape.

    Args:
        canon: (L,3) model landmarks (metres, model frame).
        obs: (N,L,2) observed landmarks (pixels).
        focal: focal length in pixels.
        size: image side (principal point at the centre).
        points: indices of the landmarks used.

    Returns:
        rotation (N,3) axis-angle, translation (N,3) in the fit's world frame, and the median distance D.
    """
    K = np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1]], np.float64)
    obj = canon[points].astype(np.float64)
    rot_cv, t_cv = [], []
    prev = None
    for frame in obs:
        img = (frame[points] - 0.5).astype(np.float64)  # OpenCV's pixel centres are at integers
        if prev is None:
            guess = (np.array([[math.pi], [0.0], [0.0]]), np.array([[0.0], [0.0], [0.6]]))
            ok, r, t = cv2.solvePnP(obj, img, K, None, guess[0], guess[1], True, cv2.SOLVEPNP_ITERATIVE)
        else:
            ok, r, t = cv2.solvePnP(obj, img, K, None, prev[0].copy(), prev[1].copy(), True)
        if not ok or t[2, 0] <= 0:
            r, t = prev if prev is not None else guess
        prev = (r, t)
        rot_cv.append(cv2.Rodrigues(r)[0])
        t_cv.append(t[:, 0])
    Rp = torch.from_numpy(np.stack(rot_cv)).float()
    tp = torch.from_numpy(np.stack(t_cv)).float()
    D = float(tp[:, 2].median())
    Rh = CAM_R @ Rp  # X_cam = CAM_R (Rh X + T) + (0,0,D) = Rp X + tp
    T = (tp - torch.tensor([0.0, 0.0, D])) @ CAM_R.T
    return matrix_to_axis_angle(Rh).numpy(), T.numpy(), D


def huber(x: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber penalty of non-negative residuals ``x`` (quadratic below ``delta``, linear above)."""
    return torch.where(x < delta, 0.5 * x**2, delta * (x - 0.5 * delta))


class Tracker(nn.Module):
    """Parameters of one subject's fit and its objective.

    Args:
        headmodel: a HeadModel.
        observed: (N,L,2) landmarks in pixels: L = 68 iBUG points, or 478 FaceMesh points when
            ``cfg["landmarks"] == "dense"`` (the head model then needs a dense embedding).
        size: image side in pixels.
        cfg: tracking config (conf/tracking/default.yaml) with ``jaw_weight``, ``noise_px`` and
            ``landmarks`` resolved (:func:`src.tracking.run.resolve_auto`; ``landmarks`` absent = 68).
        gaps: (N-1,) frame distance between consecutive frames (smoothness is divided by it), or None.
        visible: (N,L) weights, 0 for landmarks on padded crop pixels or under an occluder (they count
            nowhere), or None (all count).
    """

    def __init__(
        self, headmodel, observed: np.ndarray, size: int, cfg: dict[str, Any], gaps=None, visible=None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.size = int(size)
        self.dense = str(cfg.get("landmarks", "68")) == "dense"
        n_points = 478 if self.dense else 68
        if observed.ndim != 3 or observed.shape[1:] != (n_points, 2):
            raise ValueError(f"observed landmarks have shape {observed.shape}; landmarks="
                             f"{'dense' if self.dense else '68'} needs (N,{n_points},2)")  # fmt: skip
        self.lmk = LandmarkModel(headmodel, dense=self.dense)
        self.bounded = self.lmk.linear  # ICT blendshape weights live in [0,1]
        n = observed.shape[0]
        self.register_buffer("obs", torch.as_tensor(observed, dtype=torch.float32))
        if self.dense:
            w = headmodel.dense_weights.detach().float().cpu().clone()
            # ten iris points among 478 would leave gaze to the expression prior: they weigh more
            w[list(IRIS)] *= float(cfg.get("iris_weight", 1.0))
            # the rigid initialisation uses the stable face points (not the iris, not the contour)
            self.init_points = np.nonzero((w >= 0.5).numpy() & (np.arange(478) < 468))[0]
        else:
            w = torch.ones(68)
            w[:17] = float(cfg["jaw_weight"])
            self.init_points = np.arange(17, 68)
        # the summary's "nonjaw" error: stable dense points, or the 68 without the jaw contour
        self.core_points = self.init_points
        self.register_buffer("point_w", w / w.mean())
        vis = torch.ones(n, n_points) if visible is None else torch.as_tensor(visible, dtype=torch.float32)
        self.register_buffer("visible", vis)
        g = torch.ones(max(n - 1, 0)) if gaps is None else torch.as_tensor(gaps, dtype=torch.float32)
        self.register_buffer("gap_w", 1.0 / g.clamp_min(1))
        hm = headmodel
        self.identity = nn.Parameter(torch.zeros(hm.n_identity))
        self.expression = nn.Parameter(torch.zeros(n, hm.n_expression))
        self.joint_pose = nn.Parameter(torch.zeros(n, hm.n_joint_pose))
        self.rotation = nn.Parameter(torch.zeros(n, 3))
        self.translation = nn.Parameter(torch.zeros(n, 3))
        f0 = 0.5 * size / math.tan(math.radians(cfg["focal"]["fov_deg"]) / 2)
        self.register_buffer("log_f0", torch.tensor(math.log(f0)))
        self.log_focal = nn.Parameter(torch.tensor(math.log(f0)))
        self.distance0 = 0.6  # head distance at the initial focal length (set by initialise)

    @property
    def focal(self) -> torch.Tensor:
        return self.log_focal.exp()

    @property
    def distance(self) -> torch.Tensor:
        """Camera distance, tied to the focal length (a longer lens sees the same head size from further
        away), so that the focal length is a well-conditioned direction: only the perspective changes."""
        return self.distance0 * torch.exp(self.log_focal - self.log_f0)

    def initialise(self) -> None:
        """Rigid pose per frame by PnP of the mean shape on the stable landmarks (68: the non-jaw ones)."""
        with torch.no_grad():
            canon = self.lmk.canonical(self.identity, self.expression[:1] * 0)[0].numpy()
            self.log_focal.copy_(self.log_f0)
        rot, trans, D = rigid_init(
            canon, self.obs.numpy(), float(self.log_f0.exp()), self.size, self.init_points
        )
        self.distance0 = D
        with torch.no_grad():
            self.rotation.copy_(torch.from_numpy(rot))
            self.translation.copy_(torch.from_numpy(trans))

    def cameras(self) -> Cameras:
        """The current camera (focal length and distance as fitted), differentiable."""
        return fit_cameras(self.focal, self.distance, self.size)

    def landmarks2d(self) -> torch.Tensor:
        """(N,L,2) projected model landmarks."""
        jp = self.joint_pose if self.joint_pose.shape[1] else None
        pts = self.lmk(self.identity, self.expression, self.rotation, self.translation, jp)
        return self.cameras().project(pts)

    def residuals(self) -> torch.Tensor:
        """(N,L) reprojection error in pixels at 256 px."""
        return (self.landmarks2d() - self.obs).norm(dim=-1) * (256.0 / self.size)

    def loss(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total objective and its terms."""
        w = self.cfg["weights"]
        e, rot, tr, jp = self.expression, self.rotation, self.translation, self.joint_pose
        r = torch.sqrt(((self.landmarks2d() - self.obs) * (256.0 / self.size)).pow(2).sum(-1) + 1e-8)
        sigma2 = float(self.cfg["noise_px"]) ** 2  # the priors weigh more against noisier landmarks
        terms = {"landmarks": (huber(r, self.cfg["huber_px"]) * self.point_w * self.visible).mean() / sigma2}
        terms["identity"] = w["identity"] * self.identity.pow(2).sum()
        terms["expression"] = (
            w["expression_l1"] * e.abs().sum(1).mean() + w["expression_l2"] * e.pow(2).sum(1).mean()
        )
        if self.joint_pose.shape[1]:
            terms["joint_pose"] = w["joint_pose"] * jp.pow(2).sum(1).mean()
        terms["focal"] = w["focal"] * (self.log_focal - self.log_f0) ** 2
        if e.shape[0] > 1:

            def smooth(x: torch.Tensor) -> torch.Tensor:
                return ((x[1:] - x[:-1]).pow(2).sum(1) * self.gap_w).mean()

            terms["smooth"] = (
                w["smooth_rotation"] * smooth(rot)
                # centimetres at 0.7 m: relative to the camera distance, so that a wider field of view
                # (a closer camera, smaller translations) is not favoured by the focal search
                + w["smooth_translation"] * smooth(tr * (70.0 / self.distance))
                + w["smooth_expression"] * smooth(e)
            )
        return sum(terms.values()), terms

    def project_bounds(self) -> None:
        """Keep ICT expression weights in [0,1] (projected gradient)."""
        if self.bounded:
            with torch.no_grad():
                self.expression.clamp_(0.0, 1.0)

    def stage_params(self, stage: str) -> list[dict]:
        """Adam parameter groups of a stage ('rigid' or 'full')."""
        lr = self.cfg["lr"]
        groups = [
            {"params": [self.rotation], "lr": lr["rotation"]},
            {"params": [self.translation], "lr": lr["translation"]},
        ]
        if self.cfg.get("optimize_focal", self.cfg["focal"]["optimize"]):
            groups.append({"params": [self.log_focal], "lr": lr["focal"]})
        if stage == "full":
            groups += [
                {"params": [self.identity], "lr": lr["identity"]},
                {"params": [self.expression], "lr": lr["expression"]},
            ]
            if self.joint_pose.shape[1]:
                groups.append({"params": [self.joint_pose], "lr": lr["joint_pose"]})
        return groups

    def run_stage(
        self, stage: str, steps: int, callback=None, desc: str | None = None, leave: bool = True
    ) -> dict[str, float]:
        """Optimise a stage for ``steps`` Adam steps (cosine-decayed learning rates), with a progress bar.

        Stops with :class:`src.utils.signals.StopRequestedError` at the next step after SIGTERM/SIGINT.

        Returns:
            the final terms as floats.
        """
        if steps <= 0:
            return {}
        opt = torch.optim.Adam(self.stage_params(stage))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.0)
        bar = tqdm(range(steps), desc=desc or f"tracking: {stage} fit", unit="step", leave=leave)
        for step in bar:
            check_stop(f"tracking ({stage} fit)")
            opt.zero_grad(set_to_none=True)
            total, terms = self.loss()
            total.backward()
            opt.step()
            sched.step()
            self.project_bounds()
            if callback is not None:
                callback(stage, step, total)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{float(total.detach()):.4g}", refresh=False)
        with torch.no_grad():
            total, terms = self.loss()
        return {"total": float(total), **{k: float(v) for k, v in terms.items()}}

    def params(self) -> dict[str, np.ndarray]:
        """The fit as layout arrays (tracking.npz keys)."""
        K, R, t = camera_matrices(self.focal.item(), self.distance.item(), self.size)
        d = {k: getattr(self, k).detach().numpy().astype(np.float32) for k in
             ("identity", "expression", "rotation", "translation", "joint_pose")}  # fmt: skip
        return {**d, "K": K, "R": R, "t": t}

    def load_params(self, p: dict[str, np.ndarray]) -> None:
        """Restore a fit from :meth:`params` output (for resuming)."""
        with torch.no_grad():
            for k in ("identity", "expression", "rotation", "translation", "joint_pose"):
                getattr(self, k).copy_(torch.from_numpy(np.asarray(p[k])))
            self.log_focal.fill_(math.log(float(p["K"][0, 0])))
        self.distance0 = float(p["t"][2]) / math.exp((self.log_focal - self.log_f0).item())


def focal_search(
    headmodel, observed: np.ndarray, size: int, cfg: dict[str, Any], gaps=None, visible=None
) -> dict[str, Any]:
    """Choose the field of view whose fit explains the landmarks best.

    The focal length is only weakly determined by 68 landmarks (perspective is a small effect), so each
    candidate of ``cfg.focal.search_fovs`` is fitted briefly with its focal length fixed on an evenly spaced
    subset of frames; the minimum of the total objective is refined by a parabola in log focal length.

    Returns:
        {"fov_deg": chosen, "candidates": {fov: objective}}.
    """
    fc = cfg["focal"]
    n = len(observed)
    sub = np.unique(np.linspace(0, n - 1, min(int(fc["search_frames"]), n)).round().astype(int))
    sub_gaps = (
        np.diff(sub).astype(np.float32) if gaps is None else np.add.reduceat(gaps, sub[:-1])[: len(sub) - 1]
    )
    fovs = [float(f) for f in fc["search_fovs"]]
    losses = []
    for fov in tqdm(fovs, desc="tracking: focal search", unit="fov"):
        c = {**cfg, "focal": {**fc, "fov_deg": fov}, "optimize_focal": False}
        tk = Tracker(headmodel, observed[sub], size, c, sub_gaps, None if visible is None else visible[sub])
        tk.initialise()
        tk.run_stage("rigid", int(fc["search_steps"][0]), desc=f"  fov {fov:g}: rigid", leave=False)
        losses.append(
            tk.run_stage("full", int(fc["search_steps"][1]), desc=f"  fov {fov:g}: full", leave=False)[
                "total"
            ]
        )
    k = int(np.argmin(losses))
    best = fovs[k]
    if 0 < k < len(fovs) - 1:  # parabola through the three points around the minimum, in log focal
        x = np.log([0.5 * size / math.tan(math.radians(fovs[j]) / 2) for j in (k - 1, k, k + 1)])
        a, b, _ = np.polyfit(x, [losses[j] for j in (k - 1, k, k + 1)], 2)
        if a > 0:
            f = math.exp(float(np.clip(-b / (2 * a), x.min(), x.max())))
            best = math.degrees(2 * math.atan(0.5 * size / f))
    return {"fov_deg": best, "candidates": {str(f): round(v, 5) for f, v in zip(fovs, losses)}}
