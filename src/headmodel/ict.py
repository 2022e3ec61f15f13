"""ICT-FaceKit Light as a :class:`~src.headmodel.base.HeadModel` (linear identity + expression blendshapes).

The model is read from ``ict_facekit_light.npz`` (see ``shared/assets/ict_facekit/README.md``; build it from
the original OBJ release with ``python -m src.headmodel.ict_convert``). There is no skeleton: jaw and eyes
move through blendshapes (jawOpen, eyeLookUp_L, ...), so ``n_joint_pose`` is 0.
"""

from __future__ import annotations

import difflib
import os
import zipfile

import numpy as np
import torch

from src.headmodel.atlas import pack_atlas
from src.headmodel.base import HeadModel, HeadModelError
from src.headmodel.dense import ICT_EMBEDDING, attach_dense
from src.headmodel.gaze import GazeRig
from src.headmodel.regions import (
    ICT_HAIR_REGIONS,
    ICT_HIDDEN_REGIONS,
    ICT_OFFSET_REGIONS,
    ICT_REGION_LABELS,
)
from src.utils.assets import AssetNotFoundError, find_asset

ICT_HINT = (
    "To get ICT-FaceKit: git clone https://github.com/ICT-VGL/ICT-FaceKit and run "
    "'python -m src.headmodel.ict_convert --src ICT-FaceKit/FaceXModel "
    "--out ASSETS/ict_facekit/ict_facekit_light.npz', "
    "or point AVATAR_ASSETS at a folder with ict_facekit/ict_facekit_light.npz."
)

REQUIRED_KEYS = (
    "template",
    "faces",
    "uvs",
    "face_uvs",
    "face_material",
    "material_names",
    "identity_basis",
    "expression_basis",
    "expression_names",
    "landmarks68",
    "rigid_landmarks",
    "region_names",
    "region_vertex_ranges",
    "region_face_ranges",
)


def triangulate(quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split quads (a,b,c,d) into (a,b,c),(a,c,d); rows whose 4th index is -1 are triangles already.

    Args:
        quads: (F,4) integer corner indices, -1 in column 3 for triangles.

    Returns:
        tris (F_tri,3) int64 and src (F_tri,) int64, the original face of each triangle (non-decreasing:
        the two halves of a quad are consecutive).
    """
    quads = np.asarray(quads, dtype=np.int64)
    is_quad = quads[:, 3] >= 0
    first = quads[:, [0, 1, 2]]
    second = quads[is_quad][:, [0, 2, 3]]
    src = np.concatenate([np.arange(len(quads)), np.nonzero(is_quad)[0]])
    order = np.argsort(src, kind="stable")
    return np.concatenate([first, second])[order], src[order]


def _ranges_to_labels(ranges: np.ndarray, n: int, what: str) -> np.ndarray:
    """(R,2) inclusive [first,last] ranges -> (n,) int64 region labels; every index must be covered."""
    labels = np.full(n, -1, dtype=np.int64)
    for r, (lo, hi) in enumerate(np.asarray(ranges, dtype=np.int64)):
        labels[lo : hi + 1] = r
    if (labels < 0).any():
        raise HeadModelError(
            f"region_{what}_ranges leave {(labels < 0).sum()} {what}s unlabelled; "
            "re-run src.headmodel.ict_convert"
        )
    return labels


class ICTHeadModel(HeadModel):
    """ICT-FaceKit Light: vertices = template + identity @ identity_basis + expression @ expression_basis.

    Buffers (non-persistent: they are rebuilt from the npz, not stored in checkpoints), in metres:
        template (V,3), identity_basis (n_identity,V,3), expression_basis (n_expression,V,3),
        faces (F,3) long (quads split into two triangles), uvs (T,2), face_uvs (F,3) long,
        vertex_regions (V,) long, face_regions (F,) long, face_material (F,) long,
        lmk_faces (68,) long, lmk_bary (68,3) (one-hot: each landmark is exactly one vertex),
        landmark_vertices (68,) long, rigid_landmarks (9,) long (indices into the 68),
        rigid_vertices, fitting_vertices (long; empty if the npz lacks them).
    Attributes: expression_names, region_names, material_names (lists of str); V = 26719, F = 52220.
    Region lists: hidden_regions (:data:`ICT_HIDDEN_REGIONS`), offset_regions (:data:`ICT_OFFSET_REGIONS`),
    region_labels (:data:`ICT_REGION_LABELS`).

    Args:
        path: the npz, absolute or relative to an asset root (see :func:`src.utils.assets.find_asset`).
        n_identity: number of identity modes used (the first n; at most what the file holds, 100).
        n_expression: number of expression blendshapes used (the first n), or None for all (53).
        scale: factor applied to all positions; the npz is in centimetres, 0.01 gives metres.
        atlas: repack the per-material UDIM tiles into one square atlas (see :mod:`src.headmodel.atlas`)
            so a single texture image covers every material; False keeps the original coordinates.
        dense: load the packaged FaceMesh-478 embedding (:mod:`src.headmodel.dense`) when it fits this
            mesh, for :meth:`landmarks478`; ``has_dense`` tells whether it did.
        gaze_deg: (horizontal, vertical) eyeball rotation in degrees at eyeLook weight 1
            (:mod:`src.headmodel.gaze`), or None to keep the eyeballs still (ICT's own behaviour).
    """

    def __init__(
        self,
        path: str | os.PathLike = "ict_facekit/ict_facekit_light.npz",
        n_identity: int = 100,
        n_expression: int | None = None,
        scale: float = 0.01,
        atlas: bool = True,
        dense: bool = True,
        gaze_deg: tuple[float, float] | None = (35.0, 25.0),
    ) -> None:
        super().__init__()
        try:
            self.path = find_asset(path, hint=ICT_HINT)
        except AssetNotFoundError as err:
            raise HeadModelError(str(err)) from err
        data = self._load(self.path)
        V = data["template"].shape[0]
        n_id_file, n_ex_file = data["identity_basis"].shape[0], data["expression_basis"].shape[0]
        if n_expression is None:
            n_expression = n_ex_file
        for name, n, avail in (
            ("n_identity", n_identity, n_id_file),
            ("n_expression", n_expression, n_ex_file),
        ):
            if not 0 <= n <= avail:
                raise HeadModelError(f"{name}={n} but {self.path} holds {avail} modes; use 0..{avail}")
        self.n_identity = int(n_identity)
        self.n_expression = int(n_expression)
        self.n_joint_pose = 0
        self.scale = float(scale)
        self.expression_names = [str(s) for s in data["expression_names"][: self.n_expression]]
        self.region_names = [str(s) for s in data["region_names"]]
        self.material_names = [str(s) for s in data["material_names"]]

        faces, src = triangulate(data["faces"])
        face_uvs, uv_src = triangulate(data["face_uvs"])
        if not np.array_equal(src, uv_src):
            raise HeadModelError(
                f"{self.path}: faces and face_uvs disagree on which faces are quads; rebuild it"
            )
        if faces.min() < 0 or faces.max() >= V:
            raise HeadModelError(f"{self.path}: face indices outside 0..{V - 1}; rebuild it with ict_convert")
        face_regions = _ranges_to_labels(data["region_face_ranges"], len(data["faces"]), "face")[src]
        vertex_regions = _ranges_to_labels(data["region_vertex_ranges"], V, "vertex")
        lmk_vertices = data["landmarks68"].astype(np.int64)
        lmk_faces, lmk_bary = self._embed_vertices(faces, lmk_vertices)

        def f32(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

        def long(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

        buffers = {
            "template": f32(data["template"]) * self.scale,
            "identity_basis": f32(data["identity_basis"][: self.n_identity]) * self.scale,
            "expression_basis": f32(data["expression_basis"][: self.n_expression]) * self.scale,
            "faces": long(faces),
            "uvs": f32(data["uvs"]),
            "face_uvs": long(face_uvs),
            "vertex_regions": long(vertex_regions),
            "face_regions": long(face_regions),
            "face_material": long(data["face_material"][src]),
            "lmk_faces": long(lmk_faces),
            "lmk_bary": f32(lmk_bary),
            "landmark_vertices": long(lmk_vertices),
            "rigid_landmarks": long(data["rigid_landmarks"]),
            "rigid_vertices": long(data.get("rigid_vertices", np.zeros(0))),
            "fitting_vertices": long(data.get("fitting_vertices", np.zeros(0))),
        }
        if atlas:
            buffers["uvs"], buffers["face_uvs"] = pack_atlas(
                buffers["uvs"], buffers["face_uvs"], buffers["face_material"], self.material_names
            )
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)
        self.has_dense = bool(dense) and attach_dense(self, ICT_EMBEDDING)
        self.gaze = None
        if gaze_deg is not None and GazeRig.available(self.region_names):
            self.gaze = GazeRig(self.template, self.identity_basis, self.vertex_regions, self.region_names,
                                self.expression_names, gaze_deg)  # fmt: skip

    @staticmethod
    def _load(path) -> dict[str, np.ndarray]:
        """Read and validate the npz (keys, shapes, dtypes)."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [k for k in REQUIRED_KEYS if k not in npz.files]
                if missing:
                    raise HeadModelError(
                        f"{path} lacks keys {missing}; rebuild it with python -m src.headmodel.ict_convert"
                    )
                data = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            if isinstance(err, HeadModelError):
                raise
            raise HeadModelError(f"cannot read {path} as npz ({err}); re-download or rebuild it") from err
        V = data["template"].shape[0] if data["template"].ndim == 2 else -1
        F = data["faces"].shape[0] if data["faces"].ndim == 2 else -1
        R = len(data["region_names"])
        expected = {
            "template": (V, 3),
            "faces": (F, 4),
            "face_uvs": (F, 4),
            "face_material": (F,),
            "identity_basis": (None, V, 3),
            "expression_basis": (len(data["expression_names"]), V, 3),
            "landmarks68": (68,),
            "region_vertex_ranges": (R, 2),
            "region_face_ranges": (R, 2),
        }
        if data["uvs"].ndim != 2 or data["uvs"].shape[1] != 2:
            expected["uvs"] = (None, 2)
        for key, shape in expected.items():
            got = data[key].shape
            if V < 0 or len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
                want = "(" + ",".join("N" if s is None else str(s) for s in shape) + ")"
                raise HeadModelError(
                    f"{path}: '{key}' has shape {got}, expected {want}; "
                    "rebuild it with python -m src.headmodel.ict_convert"
                )
        return data

    @staticmethod
    def _embed_vertices(faces: np.ndarray, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each vertex, the first triangle containing it and a one-hot barycentric picking it.

        Args:
            faces: (F,3) triangles.
            vertices: (L,) vertex indices.

        Returns:
            (L,) face indices and (L,3) float32 barycentric coordinates.
        """
        face_idx = np.empty(len(vertices), dtype=np.int64)
        bary = np.zeros((len(vertices), 3), dtype=np.float32)
        for i, v in enumerate(vertices):
            hits = np.argwhere(faces == v)
            if len(hits) == 0:
                raise HeadModelError(
                    f"landmark vertex {v} is in no face; rebuild the npz with src.headmodel.ict_convert"
                )
            face_idx[i] = hits[0, 0]
            bary[i, hits[0, 1]] = 1.0
        return face_idx, bary

    @property
    def hidden_regions(self) -> list[str]:
        """:data:`ICT_HIDDEN_REGIONS` (transparent overlays and eyelash shells) present in this model."""
        return [r for r in ICT_HIDDEN_REGIONS if r in self.region_names]

    @property
    def offset_regions(self) -> list[str]:
        """:data:`ICT_OFFSET_REGIONS` (face, head_neck) present in this model."""
        return [r for r in ICT_OFFSET_REGIONS if r in self.region_names]

    @property
    def hair_regions(self) -> list[str]:
        """:data:`ICT_HAIR_REGIONS` (head_neck: scalp, ears, neck) present in this model."""
        return [r for r in ICT_HAIR_REGIONS if r in self.region_names]

    @property
    def region_labels(self) -> dict[str, tuple[str, ...]]:
        """:data:`ICT_REGION_LABELS`: which segmentation labels each ICT region may be rendered over."""
        return dict(ICT_REGION_LABELS)

    def canonical(
        self, identity: torch.Tensor, expression: torch.Tensor, joint_pose: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Blendshape sum (no rigid pose).

        Args:
            identity: (B,n_identity) or (n_identity,); a single row is shared by the whole batch.
            expression: (B,n_expression) or (n_expression,).
            joint_pose: ignored (ICT has no joints; (B,0) or None).

        Returns:
            (B,V,3) vertices in metres; with a gaze rig the eyeballs turn with the eyeLook weights.
        """
        dtype = self.template.dtype
        identity = identity.to(dtype).reshape(-1, self.n_identity)
        expression = expression.to(dtype).reshape(-1, self.n_expression)
        verts = self.template + torch.einsum("bi,ivc->bvc", identity, self.identity_basis)
        verts = verts + torch.einsum("be,evc->bvc", expression, self.expression_basis)
        if self.gaze is not None:
            ident = identity.expand(verts.shape[0], -1)
            verts = self.gaze.apply(verts, self.gaze.vertex_eye, ident, expression.expand(verts.shape[0], -1))
        return verts

    def point_eyes(self, face_ids: torch.Tensor) -> torch.Tensor:
        """(P,) long: 0/1 for surface points (triangles ``face_ids``) on the left/right eyeball, else -1
        (all -1 without a gaze rig)."""
        if self.gaze is None:
            return torch.full((len(face_ids),), -1, dtype=torch.long, device=face_ids.device)
        return self.gaze.vertex_eye[self.faces[face_ids, 0]]

    def expression_index(self, name: str) -> int:
        """Position of a named blendshape (e.g. ``'jawOpen'``) in the expression vector."""
        try:
            return self.expression_names.index(name)
        except ValueError:
            close = difflib.get_close_matches(name, self.expression_names, n=3)
            raise HeadModelError(
                f"unknown ICT expression '{name}'"
                + (f" (did you mean {close}?)" if close else "")
                + f"; valid names are ICTHeadModel.expression_names ({len(self.expression_names)} ARKit "
                "blendshape names)"
            ) from None

    def expression_vector(self, weights: dict[str, float]) -> torch.Tensor:
        """Expression coefficients from named weights, e.g. ``{'jawOpen': 0.6, 'mouthSmile_L': 0.3}``.

        Returns:
            (n_expression,) float tensor on the model's device, zero for unnamed blendshapes.
        """
        vec = torch.zeros(self.n_expression, dtype=self.template.dtype, device=self.template.device)
        for name, w in weights.items():
            vec[self.expression_index(name)] = float(w)
        return vec
