"""Calibrate the embedding of FaceMesh's 478 points on the head model (``src.tracking.calibrate_dense``).

A synthetic subject (by default seed 1, not the seed-0 subject the tracking bench scores) is rendered with
its true vertices known; FaceMesh (:class:`src.preprocess.landmarks.MediapipeMesh`) runs on every frame, and
each detected point is mapped to the surface under it: the rasteriser's triangle at that pixel (the
nearest covered pixel when the point falls just off the silhouette), with the point's barycentrics in the
projected triangle, perspective-corrected. Iris points (468-477) count only where they land on an
eyeball. Per point, the hits of the near-frontal frames (``|yaw| <= max_yaw_deg``: self-occluded points
of turned heads land on the wrong surface) are re-expressed on the neutral template, their coordinate-wise
median is taken and put back on the closest of the hit triangles.

Weights: the embedded point is projected through every frame's true vertices and compared with FaceMesh;
``spread_px`` is its RMS error over all frames (pixels at 256 px: detector noise, plus the sliding of
contour points as the head turns), and ``weight = min(1, (median spread / spread)^2)`` (inverse variance
relative to a typical point, so stable points count fully and sliding ones little).

Usage::

    python -m src.tracking.calibrate_dense [--seed 1] [--frames 120] [--resolution 256]
        [--work data/calibration_dense] [--out src/headmodel/data/ict_facemesh478.npz]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from src.core.layout import SubjectLayout
from src.datamodules.synthetic.generate import config_hash, generate_subject
from src.headmodel.dense import ICT_EMBEDDING, IRIS, N_DENSE, DenseEmbedding, pose_features, pose_offsets
from src.headmodel.ict import ICTHeadModel
from src.headmodel.rotation import axis_angle_to_matrix
from src.preprocess.landmarks import MediapipeMesh
from src.render import Cameras
from src.render.rasterize import rasterize

log = logging.getLogger(__name__)


def calibration_subject(work: Path, headmodel, seed: int, frames: int, resolution: int) -> Path:
    """Render (or reuse) the synthetic calibration subject under ``work``."""
    cfg = {"resolution": resolution, "n_frames": frames, "seed": seed}
    root = Path(work) / f"seed{seed}_{resolution}px_{frames}f"
    layout = SubjectLayout(root)
    if not (layout.exists() and layout.read_meta().get("config_hash") == config_hash(cfg)):
        generate_subject(root, headmodel, config=cfg, **cfg)
    return root


def detect_facemesh(layout: SubjectLayout, n: int) -> np.ndarray:
    """(N,478,2) FaceMesh points per frame (pixels, corner origin), NaN where no face was found."""
    mesh = MediapipeMesh(static_image_mode=True, max_faces=1)
    out = np.full((n, N_DENSE, 2), np.nan, np.float32)
    try:
        for i in tqdm(range(n), desc="calibrate: FaceMesh", unit="frame"):
            faces = mesh(layout.read_image("frames", i)[..., :3])
            if faces:
                out[i] = faces[0]
    finally:
        mesh.close()
    return out


def screen_bary(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """2D barycentrics of points in triangles, clamped into the triangle.

    Args:
        p: (P,2) points.
        tri: (P,3,2) triangle corners.

    Returns:
        (P,3) non-negative weights summing to 1.
    """
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1, v2 = b - a, c - a, p - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    w1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    w2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    w = np.clip(np.stack([1 - w1 - w2, w1, w2], -1), 0, None)
    return w / np.maximum(w.sum(-1, keepdims=True), 1e-12)


def closest_on_triangles(q: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest point of each triangle to ``q``.

    Args:
        q: (3,) query point.
        tri: (K,3,3) triangles.

    Returns:
        squared distances (K,) and barycentrics (K,3) of the closest points.
    """
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    n = np.cross(b - a, c - a)
    nn = np.maximum((n * n).sum(-1), 1e-20)
    # barycentrics of the projection onto the plane
    w1 = (np.cross(q - a, c - a) * n).sum(-1) / nn
    w2 = (np.cross(b - a, q - a) * n).sum(-1) / nn
    bary = np.stack([1 - w1 - w2, w1, w2], -1)
    inside = (bary >= 0).all(-1)
    best_b = bary.copy()
    best_d = np.full(len(tri), np.inf)
    pts = (bary[:, :, None] * tri).sum(1)
    best_d[inside] = ((pts - q) ** 2).sum(-1)[inside]
    for i, j in ((0, 1), (1, 2), (2, 0)):  # edges, for the projections that fall outside
        e = tri[:, j] - tri[:, i]
        t = np.clip(((q - tri[:, i]) * e).sum(-1) / np.maximum((e * e).sum(-1), 1e-20), 0, 1)
        d = ((tri[:, i] + t[:, None] * e - q) ** 2).sum(-1)
        better = ~inside & (d < best_d)
        bb = np.zeros_like(bary)
        bb[:, i], bb[:, j] = 1 - t, t
        best_b[better], best_d[better] = bb[better], d[better]
    return best_d, best_b


@torch.no_grad()
def surface_hits(
    headmodel, verts: np.ndarray, cams: Cameras, points: np.ndarray, size: int, batch: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Map 2D points to the visible surface of the posed mesh.

    Args:
        headmodel: the head model (its hidden regions are not rasterised, as in the synthetic renders).
        verts: (N,V,3) posed world vertices.
        cams: the subject's camera (batch 1).
        points: (N,P,2) pixel points (NaN rows are skipped).
        size: image side.
        batch: frames rasterised at once.

    Returns:
        face ids (N,P) int64 into ``headmodel.faces`` (-1 for no hit) and barycentrics (N,P,3).
    """
    keep = torch.nonzero(~headmodel.region_face_mask(headmodel.hidden_regions))[:, 0]
    faces = headmodel.faces[keep]
    n, p = points.shape[:2]
    fid = np.full((n, p), -1, np.int64)
    bary = np.zeros((n, p, 3), np.float32)
    for a in range(0, n, batch):
        v = torch.from_numpy(np.asarray(verts[a : a + batch], np.float32))
        scr = torch.cat([cams.project(v), cams.transform(v)[..., 2:]], -1)  # (B,V,3): pixels, depth
        frag_faces = rasterize(scr, faces, (size, size)).face_idx
        scr = scr.numpy()
        for j in range(v.shape[0]):
            i = a + j
            ok = np.isfinite(points[i, :, 0])
            if not ok.any():
                continue
            fmap = frag_faces[j].numpy()
            _, (iy, ix) = ndimage.distance_transform_edt(fmap < 0, return_indices=True)
            px = np.clip(np.floor(points[i, :, 0]).astype(int), 0, size - 1)
            py = np.clip(np.floor(points[i, :, 1]).astype(int), 0, size - 1)
            f = fmap[iy[py, px], ix[py, px]]
            f = np.where(ok & (f >= 0), f, -1)
            hit = f >= 0
            tri = faces[f[hit]].numpy()
            b2 = screen_bary(points[i, hit], scr[j][tri][..., :2])
            b3 = b2 / scr[j][tri][..., 2]  # perspective-correct: divide by depth
            bary[i, hit] = b3 / b3.sum(-1, keepdims=True)
            fid[i, hit] = keep[f[hit]].numpy()
    return fid, bary


def head_yaw_deg(rotation: np.ndarray) -> np.ndarray:
    """(N,) yaw in degrees of axis-angle head rotations (N,3) (rotation about the model's y axis)."""
    R = axis_angle_to_matrix(torch.from_numpy(np.asarray(rotation, np.float32))).numpy()
    return np.degrees(np.arctan2(R[:, 0, 2], R[:, 2, 2]))


def embed_from_hits(
    headmodel, fid: np.ndarray, bary: np.ndarray, use: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust per-point embedding from per-frame hits.

    Args:
        headmodel: the head model (hits are re-expressed on its template).
        fid: (N,P) hit triangles (-1: none); bary: (N,P,3).
        use: (N,) frames that vote.

    Returns:
        faces (P,), bary (P,3) and the number of votes per point (P,).
    """
    tmpl = headmodel.template.numpy().astype(np.float64)
    tris = headmodel.faces.numpy()
    n, p = fid.shape
    faces_out, bary_out, votes = np.zeros(p, np.int64), np.zeros((p, 3), np.float32), np.zeros(p, np.int64)
    for k in range(p):
        ok = use & (fid[:, k] >= 0)
        if not ok.any():  # no frontal vote: fall back on all frames
            ok = fid[:, k] >= 0
        if not ok.any():
            raise ValueError(f"FaceMesh point {k} never landed on the mesh; calibrate on more frames")
        f, b = fid[ok, k], bary[ok, k].astype(np.float64)
        pos = (tmpl[tris[f]] * b[:, :, None]).sum(1)  # (M,3) on the neutral template
        med = np.median(pos, 0)
        cand = np.unique(f)
        d, cb = closest_on_triangles(med, tmpl[tris[cand]])
        j = int(np.argmin(d))
        faces_out[k], bary_out[k], votes[k] = cand[j], cb[j], ok.sum()
    return faces_out, bary_out, votes


def fit_pose_offsets(
    points: torch.Tensor,
    rotation: torch.Tensor,
    cams: Cameras,
    det: np.ndarray,
    size: int,
    reg_mm: float = 0.02,
    steps: int = 400,
) -> np.ndarray:
    """Per-point offsets in the head frame, linear in :func:`pose_features`, that best explain FaceMesh.

    FaceMesh's points are not fixed surface points: they carry a per-point bias and drift with the head's
    pose (contour points slide; detectors also under-read pitch). Each point gets
    ``o(pose) = sum_k feature_k(pose) * offsets[k]`` (metres, head frame) added to its surface point,
    fitted by least squares (Huber, 3 px) over all frames, with an L2 penalty ``reg_mm`` per mm^2.

    Args:
        points: (N,P,3) embedded points through the true posed vertices (world frame).
        rotation: (N,3) true head rotations (axis-angle).
        cams: the true camera (batch 1).
        det: (N,P,2) detections (NaN rows for frames without a face).
        size: image side.
        reg_mm: L2 weight per squared millimetre of offset.
        steps: Adam steps.

    Returns:
        (3,P,3) float32 offsets of the pose features (pitch, yaw, yaw^2); the constant term is dropped.
    """
    ok = torch.from_numpy(np.isfinite(det[:, 0, 0]))
    obs = torch.from_numpy(np.nan_to_num(det)).float()[ok]
    pts, rot = points.float()[ok], rotation.float()[ok]
    R = axis_angle_to_matrix(rot)
    # a constant term is fitted along (it takes the fixed per-point bias, so the pose terms do not) and
    # dropped: it is partly the calibration subject's own shape and did not carry over to another subject
    feats = torch.cat([torch.ones(len(rot), 1), pose_features(rot)], 1)
    off = torch.zeros(feats.shape[1], pts.shape[1], 3, requires_grad=True)
    opt = torch.optim.Adam([off], lr=2e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        X = pts + torch.einsum("nk,kpc->npc", feats, off) @ R.transpose(1, 2)
        r = ((cams.project(X) - obs) * (256.0 / size)).norm(dim=-1)
        loss = torch.where(r < 3.0, 0.5 * r**2, 3.0 * (r - 1.5)).mean() + reg_mm * (off * 1e3).pow(2).mean()
        loss.backward()
        opt.step()
        sched.step()
    return off.detach()[1:].numpy().astype(np.float32)


def calibrate(
    headmodel,
    root: Path,
    max_yaw_deg: float = 20.0,
    detections: np.ndarray | None = None,
    pose_offsets_on: bool = True,
) -> DenseEmbedding:
    """Calibrate the 478-point embedding on the rendered synthetic subject at ``root`` (module docstring).

    Args:
        headmodel: the head model (without an embedding).
        root: the rendered subject (with ground_truth/vertices.npy).
        max_yaw_deg: frames within this yaw vote for the surface points.
        detections: (N,478,2) FaceMesh points, or None to detect them.
        pose_offsets_on: also fit the pose-dependent offsets (:func:`fit_pose_offsets`).
    """
    layout = SubjectLayout(Path(root))
    meta = layout.read_meta()
    gt = layout.read_params("ground_truth")
    verts = layout.read_gt_vertices()
    if verts is None:
        raise ValueError(f"{root} has no ground_truth/vertices.npy; regenerate it with save_vertices=True")
    n, size = len(gt["expression"]), int(meta["height"])
    det = detect_facemesh(layout, n) if detections is None else detections
    found = np.isfinite(det[:, 0, 0])
    if not found.any():
        raise ValueError(f"FaceMesh found no face in the {n} frames of {root}")
    cams = Cameras(
        *(torch.as_tensor(gt[k], dtype=torch.float32)[None] for k in ("K", "R", "t")), (size, size)
    )
    fid, bary = surface_hits(headmodel, verts, cams, det, size)
    eyeballs = headmodel.region_face_mask(["eyeball_left", "eyeball_right"]).numpy()
    iris = np.array(IRIS)
    on_eye = np.where(fid[:, iris] >= 0, eyeballs[np.maximum(fid[:, iris], 0)], False)
    keep_all = ~on_eye.any(0)  # never on an eyeball (e.g. every frame a blink): keep the raw hits
    fid[:, iris] = np.where(on_eye | keep_all, fid[:, iris], -1)
    yaw = head_yaw_deg(gt["rotation"])
    frontal = found & (np.abs(yaw) <= max_yaw_deg)
    faces, b, votes = embed_from_hits(headmodel, fid, bary, frontal)
    with torch.no_grad():
        tri = headmodel.faces[torch.from_numpy(faces)]
        pts = torch.einsum("npkc,pk->npc", torch.from_numpy(np.asarray(verts, np.float32))[:, tri],
                           torch.from_numpy(b))  # fmt: skip
    rot = torch.from_numpy(np.asarray(gt["rotation"], np.float32))
    offsets = fit_pose_offsets(pts, rot, cams, det, size) if pose_offsets_on else None
    # weights: reprojection error of the embedded points through the true vertices, all frames
    with torch.no_grad():
        if offsets is not None:
            pts = pts + pose_offsets(torch.from_numpy(offsets), rot) @ axis_angle_to_matrix(rot).transpose(
                1, 2
            )
        proj = cams.project(pts).numpy()
    err = np.linalg.norm(proj[found] - det[found], axis=-1) * (256.0 / size)  # (M,478)
    spread = np.sqrt((err**2).mean(0))
    ref = float(np.median(spread))
    weights = np.clip((ref / np.maximum(spread, 1e-6)) ** 2, 0.02, 1.0).astype(np.float32)
    settings = {
        "subject": str(root), "seed": int(meta["config"].get("seed", -1)), "n_frames": n,
        "resolution": size, "max_yaw_deg": max_yaw_deg, "frames_detected": int(found.sum()),
        "frames_voting": int(frontal.sum()), "yaw_range_deg": [round(float(yaw.min()), 1),
                                                               round(float(yaw.max()), 1)],
        "median_spread_px": round(ref, 3), "mean_spread_px": round(float(spread.mean()), 3),
        "min_votes": int(votes.min()), "weight_rule": "min(1, (median spread / spread)^2), floor 0.02",
        "pose_offsets": offsets is not None,
    }  # fmt: skip
    return DenseEmbedding(faces, b, weights, spread.astype(np.float32), settings, offsets)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1, help="synthetic subject seed (the bench scores seed 0)")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--max-yaw-deg", type=float, default=20.0, help="frames that vote for the position")
    ap.add_argument("--work", type=Path, default=Path("data") / "calibration_dense")
    ap.add_argument("--out", type=Path, default=ICT_EMBEDDING)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    hm = ICTHeadModel(dense=False)
    root = calibration_subject(args.work, hm, args.seed, args.frames, args.resolution)
    emb = calibrate(hm, root, args.max_yaw_deg)
    out = emb.save(args.out, hm.faces, int(hm.template.shape[0]))
    s = emb.settings
    log.info(
        "wrote %s: %d points from %d frames (%d voting, yaw %s deg); spread median %.2f px, mean %.2f px "
        "at 256 px; weight < 0.5 on %d points", out, N_DENSE, s["frames_detected"], s["frames_voting"],
        s["yaw_range_deg"], s["median_spread_px"], s["mean_spread_px"], int((emb.weights < 0.5).sum()),
    )  # fmt: skip
    return out


if __name__ == "__main__":
    main()
