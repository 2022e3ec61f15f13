"""FLAME (2020 ``generic_model.pkl`` or ``flame2023.pkl``) as a :class:`~src.headmodel.base.HeadModel`.

FLAME is licensed per user (https://flame.is.tue.mpg.de), so it is never shipped: point ``path`` (or
``$FLAME_MODEL_PATH`` in conf/headmodel/flame.yaml) at your copy. The pickles reference ``chumpy``, which
breaks on current numpy; :func:`load_pickle` reads them without it.

Skeleton: joints global(root), neck, jaw, eye L, eye R. ``joint_pose`` = neck, jaw, left eye, right eye
axis-angle (12 values). The root rotation is fixed at zero; the rigid head pose of
:meth:`HeadModel.forward` rotates about the origin (smplx's ``global_orient`` rotates about the root
joint instead, i.e. the two differ by the translation J0 - R @ J0).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from src.headmodel.base import HeadModel, HeadModelError
from src.headmodel.lbs import lbs
from src.headmodel.regions import FLAME_HAIR_REGIONS, FLAME_REGION_LABELS, FOREGROUND_LABELS
from src.headmodel.rotation import axis_angle_to_matrix
from src.utils.assets import AssetNotFoundError, find_asset

FLAME_HINT = (
    "FLAME needs a (free) licence: register at https://flame.is.tue.mpg.de, download FLAME 2020 or 2023 "
    "and set FLAME_MODEL_PATH to generic_model.pkl / flame2023.pkl (or put it at ASSETS/flame/)."
)
LMK_HINT = (
    "DECA's data/landmark_embedding.npy (https://github.com/yfeng95/DECA) holds the full 68-point "
    "embedding (full_lmk_faces_idx / full_lmk_bary_coords)"
)
REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
SHAPE_SPACE = 300
EXPR_SPACE = 100
N_JOINTS = 5
# (face-index key, barycentric key) pairs, preferred first.
LMK_KEYS = (
    ("full_lmk_faces_idx", "full_lmk_bary_coords"),
    ("lmk_face_idx", "lmk_b_coords"),
    ("static_lmk_faces_idx", "static_lmk_bary_coords"),
)


class _ChumpyStandIn:
    """Replaces any ``chumpy`` class while unpickling; keeps the pickled state (value in ``state['x']``)."""

    def __init__(self, *args, **kwargs) -> None:
        self.state = {}

    def __setstate__(self, state) -> None:
        self.state = state if isinstance(state, dict) else {"x": state}


class _FlameUnpickler(pickle.Unpickler):
    """Unpickler for FLAME files without chumpy.

    Maps ``chumpy.*`` to :class:`_ChumpyStandIn` and old ``scipy.sparse.<fmt>`` paths to ``scipy.sparse``;
    refuses classes outside numpy / scipy.sparse / plain containers, so a model file cannot run code.
    """

    SAFE_BUILTINS = frozenset(
        {"object", "set", "frozenset", "slice", "complex", "bytearray", "range", "dict", "list", "tuple"}
        | {"int", "float", "str", "bytes", "bool"}
    )

    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStandIn
        safe = (
            module.split(".")[0] in ("numpy", "collections")
            or module.startswith("scipy.sparse")
            or (module in ("copyreg", "copy_reg") and name == "_reconstructor")
            or (module == "_codecs" and name == "encode")  # bytes in protocol-2 pickles from Python 3
            or (module in ("builtins", "__builtin__") and name in self.SAFE_BUILTINS)
        )
        if not safe:
            raise HeadModelError(
                f"refusing to unpickle {module}.{name}: FLAME files hold only numpy/scipy arrays; "
                "use the original file from https://flame.is.tue.mpg.de"
            )
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            if module.startswith("scipy.sparse") and hasattr(scipy.sparse, name):
                return getattr(scipy.sparse, name)
            raise


def _plain(obj):
    """Chumpy stand-ins holding a value ('x') -> numpy arrays, recursively through dicts; others stay."""
    if isinstance(obj, _ChumpyStandIn) and "x" in obj.state:
        return np.asarray(obj.state["x"])
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def load_pickle(path: str | os.PathLike):
    """Load a (Python-2 era, latin1) pickle that may contain chumpy objects, without chumpy.

    Also reads ``.npy`` files written by ``np.save`` of a dict (FLAME/DECA landmark embeddings).

    Returns:
        The unpickled object with every chumpy object replaced by its numpy value.
    """
    try:
        with open(path, "rb") as fh:
            if fh.read(6) == b"\x93NUMPY":  # .npy holding a pickled object array (np.save of a dict)
                fh.seek(0)
                version = np.lib.format.read_magic(fh)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                _, _, dtype = read_header(fh)
                if not dtype.hasobject:
                    fh.seek(0)
                    return np.lib.format.read_array(fh)
            else:
                fh.seek(0)
            obj = _FlameUnpickler(fh, encoding="latin1").load()
        if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
            obj = obj.item()
        return _plain(obj)
    except HeadModelError:
        raise
    except Exception as err:
        raise HeadModelError(
            f"cannot unpickle {path} ({type(err).__name__}: {err}); re-download the file"
        ) from err


def _resolve(name: str | os.PathLike, beside: Path | None, hint: str) -> Path:
    """Explicit/cwd path, else ``beside/name``, else an asset root (see :func:`find_asset`)."""
    p = Path(name).expanduser()
    if beside is not None and not p.is_absolute() and not p.exists() and (beside / p).exists():
        return beside / p
    try:
        return find_asset(p, hint=hint)
    except AssetNotFoundError as err:
        raise HeadModelError(str(err)) from err


def _dense(a) -> np.ndarray:
    return np.asarray(a.toarray() if scipy.sparse.issparse(a) else a, dtype=np.float64)


def load_landmark_embedding(path: Path, n_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a FLAME landmark embedding (.npy dict, .npz or .pkl) with 68 landmarks.

    Returns:
        lmk_faces (68,) int64 and lmk_bary (68,3) float32.
    """
    if path.suffix in (".pkl", ".npy"):
        data = load_pickle(path)
    else:
        try:
            with np.load(path) as npz:
                data = {k: npz[k] for k in npz.files}
        except Exception as err:
            raise HeadModelError(f"cannot read landmark embedding {path} ({err}); {LMK_HINT}") from err
    if not isinstance(data, dict):
        raise HeadModelError(f"landmark embedding {path} is not a dict; {LMK_HINT}")
    counts = []
    for fkey, bkey in LMK_KEYS:
        if fkey in data and bkey in data:
            faces = np.asarray(data[fkey]).reshape(-1).astype(np.int64)
            bary = np.asarray(data[bkey], dtype=np.float32).reshape(-1, 3)
            counts.append(f"{fkey}: {len(faces)}")
            if len(faces) == 68 and len(bary) == 68:
                if faces.min() < 0 or faces.max() >= n_faces:
                    raise HeadModelError(
                        f"{path}: {fkey} indexes faces outside 0..{n_faces - 1}; wrong FLAME version?"
                    )
                return faces, bary
    if not counts:
        raise HeadModelError(f"{path} has none of the landmark keys {[k for k, _ in LMK_KEYS]}; {LMK_HINT}")
    raise HeadModelError(
        f"{path} gives no 68-point embedding ({', '.join(counts)}; FLAME's static embedding has 51, "
        f"without the jaw contour); {LMK_HINT}"
    )


class FLAMEHeadModel(HeadModel):
    """FLAME: shape + expression blendshapes, pose correctives and LBS over neck, jaw and eye joints.

    Buffers (non-persistent: rebuilt from the files, not stored in checkpoints), metres:
        template (V,3), shapedirs (V,3,n_identity), exprdirs (V,3,n_expression), posedirs (36,V*3),
        J_regressor (5,V), lbs_weights (V,5), faces (F,3) long, uvs (T,2), face_uvs (F,3) long
        (uvs = zeros(V,2) and face_uvs = faces when no ``uv_path``), vertex_regions (V,) long,
        face_regions (F,) long, lmk_faces (68,) long, lmk_bary (68,3).
    ``parents`` is a list of 5 ints; expression_names are placeholders 'expr000'.. (PCA modes).

    Regions: 'head' (0) only, unless ``masks_path`` (FLAME_masks.pkl: name -> vertex indices) is given; then
    region_names = ['head', *mask names] and each vertex gets the smallest mask containing it, each face the
    label of at least two of its corners (else its first corner). Region lists: nothing hidden, every region
    refined (the base class's defaults: FLAME has no overlay parts), region_labels from
    :data:`~src.headmodel.regions.FLAME_REGION_LABELS`.

    Args:
        path: generic_model.pkl (FLAME 2020) or flame2023.pkl.
        landmark_embedding: 68-point embedding (DECA's landmark_embedding.npy, or any .npy/.npz/.pkl with
            lmk_face_idx/lmk_b_coords of 68 landmarks); relative paths are looked up beside ``path`` first.
        n_shape: identity coefficients (first n of 300).
        n_expression: expression coefficients (first n of 100).
        uv_path: optional head_template.obj or texture npz (keys vt, ft) with the UV layout.
        masks_path: optional FLAME_masks.pkl.
    """

    def __init__(
        self,
        path: str | os.PathLike = "flame/generic_model.pkl",
        landmark_embedding: str | os.PathLike = "landmark_embedding.npy",
        n_shape: int = 100,
        n_expression: int = 50,
        uv_path: str | os.PathLike | None = None,
        masks_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        self.path = _resolve(path, None, FLAME_HINT)
        data = load_pickle(self.path)
        if not isinstance(data, dict):
            raise HeadModelError(f"{self.path} holds a {type(data).__name__}, not a FLAME dict; {FLAME_HINT}")
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise HeadModelError(f"{self.path} lacks FLAME keys {missing} (has {sorted(data)}); {FLAME_HINT}")
        lazy = [k for k in REQUIRED_KEYS if isinstance(data[k], _ChumpyStandIn)]
        if lazy:
            raise HeadModelError(
                f"{self.path}: {lazy} are chumpy expressions without a stored value; "
                "re-save them as numpy arrays (or use the original FLAME file)"
            )
        template, faces, dirs, posedirs, J_reg, weights, parents = self._validate(data)
        V, K = len(template), dirs.shape[-1]
        n_shape_file, n_expr_file = min(K, SHAPE_SPACE), max(K - SHAPE_SPACE, 0)
        for name, n, avail, cap in (
            ("n_shape", n_shape, n_shape_file, SHAPE_SPACE),
            ("n_expression", n_expression, n_expr_file, EXPR_SPACE),
        ):
            if not 0 <= n <= min(avail, cap):
                raise HeadModelError(
                    f"{name}={n} but {self.path} has {avail} {name[2:]} components (FLAME allows {cap}); "
                    f"use 0..{min(avail, cap)}"
                )
        self.n_identity = int(n_shape)
        self.n_expression = int(n_expression)
        self.n_joint_pose = 3 * (N_JOINTS - 1)
        self.expression_names = [f"expr{i:03d}" for i in range(self.n_expression)]
        self.parents = parents

        lmk_path = _resolve(landmark_embedding, self.path.parent, LMK_HINT)
        lmk_faces, lmk_bary = load_landmark_embedding(lmk_path, len(faces))
        uvs, face_uvs = self._load_uvs(uv_path, faces) if uv_path else (np.zeros((V, 2)), faces)
        self.region_names, vertex_regions = self._load_masks(masks_path, V)
        fr = vertex_regions[faces]
        face_regions = np.where((fr[:, 1] == fr[:, 2]) & (fr[:, 0] != fr[:, 1]), fr[:, 1], fr[:, 0])

        def f32(a) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

        def long(a) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

        buffers = {
            "template": f32(template),
            "shapedirs": f32(dirs[..., : self.n_identity]),
            "exprdirs": f32(dirs[..., SHAPE_SPACE : SHAPE_SPACE + self.n_expression]),
            "posedirs": f32(posedirs.reshape(-1, posedirs.shape[-1]).T),
            "J_regressor": f32(J_reg),
            "lbs_weights": f32(weights),
            "faces": long(faces),
            "uvs": f32(uvs),
            "face_uvs": long(face_uvs),
            "vertex_regions": long(vertex_regions),
            "face_regions": long(face_regions),
            "lmk_faces": long(lmk_faces),
            "lmk_bary": f32(lmk_bary),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)

    def _validate(self, data: dict):
        """Shapes of the FLAME arrays; returns them as numpy (posedirs as (V,3,36) or (V*3,36))."""
        template = _dense(data["v_template"])
        faces = np.asarray(data["f"]).astype(np.int64)
        dirs, posedirs = _dense(data["shapedirs"]), _dense(data["posedirs"])
        J_reg, weights = _dense(data["J_regressor"]), _dense(data["weights"])
        kintree = np.asarray(data["kintree_table"]).astype(np.int64)
        V = template.shape[0] if template.ndim == 2 else 0
        P = 9 * (N_JOINTS - 1)
        checks = [
            ("v_template", template.shape, template.ndim == 2 and template.shape[1] == 3, "(V,3)"),
            ("f", faces.shape, faces.ndim == 2 and faces.shape[1] == 3, "(F,3)"),
            ("shapedirs", dirs.shape, dirs.ndim == 3 and dirs.shape[:2] == (V, 3), f"({V},3,K)"),
            (
                "posedirs",
                posedirs.shape,
                posedirs.shape in ((V, 3, P), (V * 3, P)),
                f"({V},3,{P}) or ({V * 3},{P})",
            ),
            ("J_regressor", J_reg.shape, J_reg.shape == (N_JOINTS, V), f"({N_JOINTS},{V})"),
            ("weights", weights.shape, weights.shape == (V, N_JOINTS), f"({V},{N_JOINTS})"),
            ("kintree_table", kintree.shape, kintree.shape == (2, N_JOINTS), f"(2,{N_JOINTS})"),
        ]
        for key, shape, ok, want in checks:
            if not ok:
                raise HeadModelError(f"{self.path}: '{key}' has shape {shape}, expected {want}; {FLAME_HINT}")
        if faces.min() < 0 or faces.max() >= V:
            raise HeadModelError(f"{self.path}: 'f' indexes vertices outside 0..{V - 1}; the file is corrupt")
        parents = [-1] + [int(p) for p in kintree[0, 1:]]
        if any(not 0 <= p < j for j, p in enumerate(parents) if j > 0):
            raise HeadModelError(
                f"{self.path}: kintree_table parents {parents} are not a tree rooted at joint 0"
            )
        return template, faces, dirs, posedirs, J_reg, weights, parents

    def _load_uvs(self, uv_path, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """UVs (T,2) and face_uvs (F,3) from head_template.obj or an npz with vt/ft."""
        p = _resolve(
            uv_path, self.path.parent, "give uv_path = FLAME's head_template.obj or texture npz (vt, ft)"
        )
        if p.suffix == ".obj":
            from src.headmodel.ict_convert import ConvertError, read_obj

            try:
                obj = read_obj(p)
            except ConvertError as err:
                raise HeadModelError(str(err)) from err
            if (obj["faces"][:, 3] >= 0).any() or not np.array_equal(obj["faces"][:, :3], faces):
                raise HeadModelError(
                    f"{p}: its faces differ from the FLAME model's 'f'; use the matching template"
                )
            vt, ft = obj["vt"], obj["face_uvs"][:, :3]
        else:
            try:
                with np.load(p) as npz:
                    vt, ft = npz["vt"], npz["ft"]
            except (KeyError, OSError, ValueError) as err:
                raise HeadModelError(f"cannot read vt/ft from {p} ({err}); use FLAME's texture npz") from err
        if ft.shape != faces.shape or ft.min() < 0 or ft.max() >= len(vt):
            raise HeadModelError(
                f"{p}: face uvs of shape {ft.shape} do not fit {faces.shape} faces / {len(vt)} uvs"
            )
        return np.asarray(vt), np.asarray(ft)

    def _load_masks(self, masks_path, V: int) -> tuple[list[str], np.ndarray]:
        """Region names and (V,) labels; the smallest mask containing a vertex wins."""
        labels = np.zeros(V, dtype=np.int64)
        if not masks_path:
            return ["head"], labels
        p = _resolve(
            masks_path, self.path.parent, "masks_path should be FLAME_masks.pkl from the FLAME website"
        )
        masks = load_pickle(p)
        if not isinstance(masks, dict):
            raise HeadModelError(f"{p} is not a dict of region name -> vertex indices")
        names = ["head", *[str(k) for k in masks]]
        arrays = [np.asarray(v).reshape(-1).astype(np.int64) for v in masks.values()]
        for i in sorted(range(len(arrays)), key=lambda i: -len(arrays[i])):
            if len(arrays[i]) and (arrays[i].min() < 0 or arrays[i].max() >= V):
                raise HeadModelError(f"{p}: mask '{names[i + 1]}' indexes vertices outside 0..{V - 1}")
            labels[arrays[i]] = i + 1
        return names, labels

    @property
    def hair_regions(self) -> list[str]:
        """:data:`FLAME_HAIR_REGIONS` present in this model (all regions when none is)."""
        return [r for r in FLAME_HAIR_REGIONS if r in self.region_names] or list(self.region_names)

    @property
    def region_labels(self) -> dict[str, tuple[str, ...]]:
        """:data:`FLAME_REGION_LABELS` for the mask regions; every foreground label for the others."""
        return {r: FLAME_REGION_LABELS.get(r, FOREGROUND_LABELS) for r in self.region_names}

    def canonical(
        self, identity: torch.Tensor, expression: torch.Tensor, joint_pose: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Shaped, expression-deformed and joint-posed vertices (root rotation zero, before the rigid pose).

        Args:
            identity: (B,n_identity) or (n_identity,) shape coefficients; one row is shared by the batch.
            expression: (B,n_expression) expression coefficients.
            joint_pose: (B,12) axis-angle neck, jaw, left eye, right eye, or None for all zero.

        Returns:
            (B,V,3) vertices in metres.
        """
        dtype = self.template.dtype
        expression = expression.to(dtype).reshape(-1, self.n_expression)
        identity = identity.to(dtype).reshape(-1, self.n_identity)
        B = max(identity.shape[0], expression.shape[0], 1 if joint_pose is None else joint_pose.shape[0])
        coeffs = torch.cat([identity.expand(B, -1), expression.expand(B, -1)], dim=1)
        if joint_pose is None:
            joint_pose = torch.zeros(B, self.n_joint_pose, dtype=dtype, device=self.template.device)
        pose = torch.cat([torch.zeros_like(joint_pose[:, :3]), joint_pose.to(dtype)], dim=1).expand(B, -1)
        rots = axis_angle_to_matrix(pose.reshape(B, N_JOINTS, 3))
        dirs = torch.cat([self.shapedirs, self.exprdirs], dim=-1)
        verts, _ = lbs(
            coeffs, rots, self.template, dirs, self.posedirs, self.J_regressor, self.parents, self.lbs_weights
        )
        return verts
