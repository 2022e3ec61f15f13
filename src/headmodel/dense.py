"""FaceMesh's 478 points embedded on a head model's surface (dense landmarks for tracking).

Each FaceMesh point (468 face points + 10 iris points, mediapipe's numbering) is a triangle of the head
model and barycentric coordinates in it, with a weight that says how well the point stays on that spot of
the surface as the head turns (points on the occluding contour slide; they get small weights). The
embedding is calibrated on a rendered synthetic subject by ``python -m src.tracking.calibrate_dense``; the
packaged one for ICT-FaceKit Light is ``src/headmodel/data/ict_facemesh478.npz``.

File keys: ``faces`` (478,) int64 triangle ids, ``bary`` (478,3) float32, ``weights`` (478,) float32 in
(0,1], ``spread_px`` (478,) float32 (the per-point RMS reprojection error at calibration, pixels at 256
px), optionally ``offsets`` (K,478,3) float32 (pose-dependent offsets in the head frame, metres: the point
is its surface point plus ``sum_k feature_k(rotation) * offsets[k]``, features pitch, yaw, yaw^2 of
the axis-angle head rotation, see :func:`pose_features`), ``n_vertices`` / ``n_faces`` / ``faces_sha1``
(the mesh it belongs to) and ``settings`` (a JSON string with the calibration settings and results).
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from src.headmodel.base import HeadModelError

N_DENSE = 478
IRIS = tuple(range(468, 478))  # 468 and 473 are the iris centres
DATA_DIR = Path(__file__).resolve().parent / "data"
ICT_EMBEDDING = DATA_DIR / "ict_facemesh478.npz"
log = logging.getLogger(__name__)


def faces_digest(faces: torch.Tensor | np.ndarray) -> str:
    """Short SHA-1 of a triangle list (F,3), to tell whether an embedding belongs to a mesh."""
    arr = np.ascontiguousarray(np.asarray(faces, dtype=np.int64))
    return hashlib.sha1(arr.tobytes()).hexdigest()[:16]


@dataclass
class DenseEmbedding:
    """Points on a triangle mesh.

    Attributes:
        faces: (P,) int64 triangle ids.
        bary: (P,3) float32 barycentric coordinates (rows sum to 1).
        weights: (P,) float32 per-point weights in (0,1].
        spread_px: (P,) float32 calibration residual per point (pixels at 256 px), NaN if unknown.
        settings: calibration settings and summary.
        offsets: (K,P,3) float32 pose-dependent offsets (module docstring), or None (fixed surface points).
    """

    faces: np.ndarray
    bary: np.ndarray
    weights: np.ndarray
    spread_px: np.ndarray
    settings: dict
    offsets: np.ndarray | None = None

    def save(self, path: str | Path, mesh_faces: torch.Tensor | np.ndarray, n_vertices: int) -> Path:
        """Write the npz (see the module docstring) for the mesh ``mesh_faces`` (F,3) with ``n_vertices``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {} if self.offsets is None else {"offsets": self.offsets.astype(np.float32)}
        np.savez_compressed(
            path, **extra, faces=self.faces.astype(np.int64), bary=self.bary.astype(np.float32),
            weights=self.weights.astype(np.float32), spread_px=self.spread_px.astype(np.float32),
            n_vertices=np.array(int(n_vertices)), n_faces=np.array(len(mesh_faces)),
            faces_sha1=np.array(faces_digest(mesh_faces)), settings=np.array(json.dumps(self.settings)),
        )  # fmt: skip
        return path


def load_embedding(path: str | Path, mesh_faces=None, n_vertices: int | None = None) -> DenseEmbedding:
    """Read an embedding and check it against a mesh.

    Args:
        path: the npz.
        mesh_faces: (F,3) triangles of the mesh it must belong to, or None (no check).
        n_vertices: that mesh's vertex count, or None.

    Returns:
        The :class:`DenseEmbedding`.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise HeadModelError(
            f"cannot read dense embedding {path} ({err}); regenerate it with "
            "python -m src.tracking.calibrate_dense"
        ) from err
    missing = [k for k in ("faces", "bary", "weights", "n_faces", "faces_sha1") if k not in d]
    if missing:
        raise HeadModelError(
            f"{path} lacks {missing}; regenerate it with python -m src.tracking.calibrate_dense"
        )
    p = len(d["faces"])
    if d["bary"].shape != (p, 3) or d["weights"].shape != (p,):
        raise HeadModelError(
            f"{path}: bary {d['bary'].shape} / weights {d['weights'].shape} do not match {p} points"
        )
    if mesh_faces is not None and (
        int(d["n_faces"]) != len(mesh_faces) or str(d["faces_sha1"]) != faces_digest(mesh_faces)
    ):
        raise HeadModelError(
            f"{path} was calibrated on another mesh ({int(d['n_faces'])} faces); "
            "regenerate it with python -m src.tracking.calibrate_dense"
        )
    if n_vertices is not None and "n_vertices" in d and int(d["n_vertices"]) != n_vertices:
        raise HeadModelError(f"{path} is for {int(d['n_vertices'])} vertices, the mesh has {n_vertices}")
    spread = d.get("spread_px", np.full(p, np.nan, np.float32))
    settings = json.loads(str(d["settings"])) if "settings" in d else {}
    offsets = d.get("offsets")
    if offsets is not None and (offsets.ndim != 3 or offsets.shape[1:] != (p, 3)):
        raise HeadModelError(f"{path}: offsets {offsets.shape} do not match {p} points")
    return DenseEmbedding(
        d["faces"].astype(np.int64),
        d["bary"].astype(np.float32),
        d["weights"].astype(np.float32),
        spread.astype(np.float32),
        settings,
        None if offsets is None else offsets.astype(np.float32),
    )


def pose_features(rotation: torch.Tensor) -> torch.Tensor:
    """(N,3) features of head rotations (N,3) (axis-angle in the fit's world frame: about x is pitch,
    about y yaw) that a point's pose-dependent offset is linear in: pitch, yaw, yaw^2 (radians).

    No constant term: a fixed per-point offset measured on one calibration subject is partly that
    subject's shape (the detector leans towards its mean face), and did not carry over to another."""
    rx, ry = rotation[:, 0], rotation[:, 1]
    return torch.stack([rx, ry, ry * ry], 1)


def pose_offsets(offsets: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """(N,P,3) head-frame offsets of the points for rotations (N,3), from ``offsets`` (K,P,3)."""
    return torch.einsum("nk,kpc->npc", pose_features(rotation), offsets)


def attach_dense(headmodel: torch.nn.Module, path: str | Path = ICT_EMBEDDING) -> bool:
    """Give ``headmodel`` the buffers ``dense_faces`` (478,), ``dense_bary`` (478,3), ``dense_weights``
    (478,) and ``dense_offsets`` (K,478,3, or None) from an embedding file, when the file exists and fits
    its mesh.

    Returns:
        True when attached; False when the file is missing or was calibrated on another mesh.
    """
    path = Path(path)
    if not path.exists():
        return False
    try:
        emb = load_embedding(path, headmodel.faces.cpu(), int(headmodel.template.shape[0]))
    except HeadModelError as err:  # say why dense tracking is unavailable instead of falling back silently
        log.warning("no dense landmarks for %s: %s", type(headmodel).__name__, err)
        return False
    dev = headmodel.faces.device
    headmodel.register_buffer("dense_faces", torch.from_numpy(emb.faces).to(dev), persistent=False)
    headmodel.register_buffer("dense_bary", torch.from_numpy(emb.bary).to(dev), persistent=False)
    headmodel.register_buffer("dense_weights", torch.from_numpy(emb.weights).to(dev), persistent=False)
    off = None if emb.offsets is None else torch.from_numpy(emb.offsets).to(dev)
    headmodel.register_buffer("dense_offsets", off, persistent=False)
    return True


def has_dense(headmodel: torch.nn.Module) -> bool:
    """Whether ``headmodel`` carries a 478-point embedding (:func:`attach_dense`)."""
    return getattr(headmodel, "dense_faces", None) is not None
