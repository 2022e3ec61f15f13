"""Convert the original ICT-FaceKit OBJ release into the one-file ``ict_facekit_light.npz``.

The original release (https://github.com/ICT-VGL/ICT-FaceKit, folder ``FaceXModel``) holds
``generic_neutral_mesh.obj``, ``identity000.obj`` .. ``identity099.obj``, one OBJ per expression
(``jawOpen.obj``, ``mouthSmile_L.obj``, ...), ``vertex_indices.json`` and ``ICTFaceModelMaterial.mtl``.

Where each npz key comes from:
    template, faces, uvs, face_uvs      generic_neutral_mesh.obj (``v``, ``vt``, ``f v/vt ...``)
    face_material, material_names       the neutral OBJ's ``usemtl`` lines (names in order of first use)
    identity_basis, identity_names      identityNNN.obj minus the neutral mesh (float64, then float32)
    expression_basis, expression_names  <expression>.obj minus the neutral mesh; order from json "expressions"
    landmarks68                         json "idx_to_landmark_verts"
    rigid_landmarks                     json "idx_to_rigid_landmark_idx"
    rigid_vertices, fitting_vertices    json "idx_to_rigid_verts", "idx_to_fitting_verts"
    region_*                            the geometry table of the ICT-FaceKit README (not in any file)

The json's "fitting_expressions", "incompatibilities" and "idx_to_lap_rigid_verts" are not stored.

Usage::

    python -m src.headmodel.ict_convert --src ICT-FaceKit/FaceXModel --out ict_facekit_light.npz
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

N_IDENTITY = 100
NEUTRAL = "generic_neutral_mesh.obj"
INDEX_JSON = "vertex_indices.json"

# (name, first vertex, last vertex, first face, last face), inclusive; from the ICT-FaceKit README.
REGIONS: list[tuple[str, int, int, int, int]] = [
    ("face", 0, 9408, 0, 9229),
    ("head_neck", 9409, 11247, 9230, 11143),
    ("mouth_socket", 11248, 13293, 11144, 13225),
    ("eye_socket_left", 13294, 13677, 13226, 13629),
    ("eye_socket_right", 13678, 14061, 13630, 14033),
    ("gums_tongue", 14062, 17038, 14034, 17005),
    ("teeth", 17039, 21450, 17006, 21495),
    ("eyeball_left", 21451, 23020, 21496, 23093),
    ("eyeball_right", 23021, 24590, 23094, 24691),
    ("lacrimal_fluid_left", 24591, 24794, 24692, 24854),
    ("lacrimal_fluid_right", 24795, 24998, 24855, 25017),
    ("eye_blend_left", 24999, 25022, 25018, 25032),
    ("eye_blend_right", 25023, 25046, 25033, 25047),
    ("eye_occlusion_left", 25047, 25198, 25048, 25175),
    ("eye_occlusion_right", 25199, 25350, 25176, 25303),
    ("eyelashes_left", 25351, 26034, 25304, 25843),
    ("eyelashes_right", 26035, 26718, 25844, 26383),
]

JSON_KEYS = {
    "expressions": "expression_names",
    "idx_to_landmark_verts": "landmarks68",
    "idx_to_rigid_landmark_idx": "rigid_landmarks",
    "idx_to_rigid_verts": "rigid_vertices",
    "idx_to_fitting_verts": "fitting_vertices",
}


class ConvertError(RuntimeError):
    """A problem with the input folder; the message names the problem and the fix."""


def _index(tok: str, n: int, line_no: int, path: Path) -> int:
    """0-based index of an OBJ index token (1-based, or negative = relative to the end)."""
    i = int(tok)
    if i > 0:
        return i - 1
    if i < 0:
        return n + i
    raise ConvertError(
        f"{path}:{line_no}: OBJ index 0 is invalid (indices are 1-based); fix or re-export the file"
    )


def read_obj(path: str | os.PathLike) -> dict:
    """Parse the subset of Wavefront OBJ used by head-model releases.

    Reads ``v``, ``vt``, ``f`` (``v``, ``v/vt``, ``v/vt/vn`` or ``v//vn`` corners; triangles and quads)
    and ``usemtl``; ignores everything else.

    Args:
        path: the OBJ file.

    Returns:
        dict with ``v`` (N,3) float64, ``vt`` (T,2) float64, ``faces`` (F,4) int32 and ``face_uvs``
        (F,4) int32 (0-based, -1 pads triangles; face_uvs is -1 where a corner has no ``vt``),
        ``face_material`` (F,) int16 (-1 before any ``usemtl``) and ``material_names`` (in order of
        first use).

    Raises:
        ConvertError: on faces with more than 4 corners or malformed lines.
    """
    path = Path(path)
    v, vt, faces, fuv, fmat = [], [], [], [], []
    materials: list[str] = []
    current = -1
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            tag = parts[0]
            try:
                if tag == "v":
                    v.append((float(parts[1]), float(parts[2]), float(parts[3])))
                elif tag == "vt":
                    vt.append((float(parts[1]), float(parts[2])))
                elif tag == "f":
                    corners = parts[1:]
                    if not 3 <= len(corners) <= 4:
                        raise ConvertError(
                            f"{path}:{line_no}: face with {len(corners)} corners; only triangles and quads "
                            "are supported, triangulate the mesh first"
                        )
                    fv, ft = [-1, -1, -1, -1], [-1, -1, -1, -1]
                    for k, c in enumerate(corners):
                        sub = c.split("/")
                        fv[k] = _index(sub[0], len(v), line_no, path)
                        if len(sub) > 1 and sub[1]:
                            ft[k] = _index(sub[1], len(vt), line_no, path)
                    faces.append(fv)
                    fuv.append(ft)
                    fmat.append(current)
                elif tag == "usemtl":
                    name = parts[1] if len(parts) > 1 else ""
                    if name not in materials:
                        materials.append(name)
                    current = materials.index(name)
            except (ValueError, IndexError) as err:
                raise ConvertError(f"{path}:{line_no}: malformed '{tag}' line ({err}); fix the file") from err
    return {
        "v": np.asarray(v, dtype=np.float64).reshape(-1, 3),
        "vt": np.asarray(vt, dtype=np.float64).reshape(-1, 2),
        "faces": np.asarray(faces, dtype=np.int32).reshape(-1, 4),
        "face_uvs": np.asarray(fuv, dtype=np.int32).reshape(-1, 4),
        "face_material": np.asarray(fmat, dtype=np.int16),
        "material_names": materials,
    }


def read_obj_vertices(path: str | os.PathLike) -> np.ndarray:
    """Only the ``v`` lines of an OBJ: (N,3) float64 (fast path for blendshape files)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        rows = [line.split()[1:4] for line in fh if line.startswith("v ")]
    try:
        return np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    except ValueError as err:
        raise ConvertError(f"{path}: malformed 'v' line ({err}); fix the file") from err


def _offsets(src: Path, names: list[str], neutral: np.ndarray) -> np.ndarray:
    """(len(names),V,3) float32 offsets of ``<name>.obj`` from the neutral mesh."""
    out = np.empty((len(names), *neutral.shape), dtype=np.float32)
    for i, name in enumerate(names):
        verts = read_obj_vertices(src / f"{name}.obj")
        if verts.shape != neutral.shape:
            raise ConvertError(
                f"{src / (name + '.obj')} has {len(verts)} vertices but {NEUTRAL} has {len(neutral)}; "
                "all OBJs must come from the same ICT-FaceKit release"
            )
        out[i] = (verts - neutral).astype(np.float32)
    return out


def _missing_message(src: Path, missing_ids: list[int], missing_ex: list[str]) -> str:
    """One line naming every missing OBJ (identity indices compressed into runs)."""
    runs: list[list[int]] = []
    for i in missing_ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    parts = [f"identity{a:03d}.obj" if a == b else f"identity{a:03d}..{b:03d}.obj" for a, b in runs]
    parts += [f"{n}.obj" for n in missing_ex]
    return (
        f"{len(missing_ids) + len(missing_ex)} OBJ file(s) missing in {src}: {', '.join(parts)}; "
        "use the complete FaceXModel folder of https://github.com/ICT-VGL/ICT-FaceKit "
        "or pass --allow-partial to convert only those present"
    )


def convert(src: str | os.PathLike, allow_partial: bool = False) -> dict[str, np.ndarray]:
    """Read an ICT-FaceKit OBJ folder into the arrays of ``ict_facekit_light.npz``.

    Args:
        src: folder with generic_neutral_mesh.obj, identityNNN.obj, <expression>.obj and vertex_indices.json.
        allow_partial: skip missing identity/expression OBJs instead of failing.

    Returns:
        dict of npz key -> array (keys, dtypes and shapes as in the asset README; identity_basis and
        expression_basis hold only the OBJs present, named by identity_names / expression_names).

    Raises:
        ConvertError: missing folder/files, bad json, inconsistent meshes.
    """
    src = Path(src)
    for required in (NEUTRAL, INDEX_JSON):
        if not (src / required).is_file():
            raise ConvertError(
                f"{src / required} not found; --src must be the FaceXModel folder of a clone of "
                "https://github.com/ICT-VGL/ICT-FaceKit"
            )
    try:
        index = json.loads((src / INDEX_JSON).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConvertError(
            f"cannot read {src / INDEX_JSON} ({err}); use the file from the ICT-FaceKit release"
        ) from err
    absent = [k for k in JSON_KEYS if k not in index]
    if absent:
        raise ConvertError(
            f"{src / INDEX_JSON} lacks keys {absent}; use the file from the ICT-FaceKit release"
        )

    id_names = [f"identity{i:03d}" for i in range(N_IDENTITY)]
    ex_names = [str(n) for n in index["expressions"]]
    missing_ids = [i for i, n in enumerate(id_names) if not (src / f"{n}.obj").is_file()]
    missing_ex = [n for n in ex_names if not (src / f"{n}.obj").is_file()]
    if (missing_ids or missing_ex) and not allow_partial:
        raise ConvertError(_missing_message(src, missing_ids, missing_ex))
    id_names = [n for n in id_names if (src / f"{n}.obj").is_file()]
    ex_names = [n for n in ex_names if (src / f"{n}.obj").is_file()]

    mesh = read_obj(src / NEUTRAL)
    neutral = mesh["v"]
    n_v, n_f = len(neutral), len(mesh["faces"])
    last = REGIONS[-1]
    if (n_v, n_f) != (last[2] + 1, last[4] + 1):
        raise ConvertError(
            f"{src / NEUTRAL} has {n_v} vertices and {n_f} faces, expected {last[2] + 1} and {last[4] + 1} "
            "(ICT Face Model Light); use the FaceXModel folder of ICT-FaceKit"
        )

    out = {
        "template": neutral.astype(np.float32),
        "faces": mesh["faces"],
        "uvs": mesh["vt"].astype(np.float32),
        "face_uvs": mesh["face_uvs"],
        "face_material": mesh["face_material"],
        "material_names": np.array(mesh["material_names"]),
        "identity_basis": _offsets(src, id_names, neutral),
        "identity_names": np.array(id_names, dtype=str),
        "expression_basis": _offsets(src, ex_names, neutral),
        "expression_names": np.array(ex_names, dtype=str),
    }
    for key, name in JSON_KEYS.items():
        if name != "expression_names":
            out[name] = np.asarray(index[key], dtype=np.int32)
    if out["landmarks68"].shape != (68,):
        raise ConvertError(
            f"{src / INDEX_JSON}: idx_to_landmark_verts has {out['landmarks68'].size} entries, not 68"
        )
    out["region_names"] = np.array([r[0] for r in REGIONS])
    out["region_vertex_ranges"] = np.array([r[1:3] for r in REGIONS], dtype=np.int32)
    out["region_face_ranges"] = np.array([r[3:5] for r in REGIONS], dtype=np.int32)
    return out


def save_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write a compressed npz via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 2 error)."""
    parser = argparse.ArgumentParser(
        prog="python -m src.headmodel.ict_convert",
        description="Convert the ICT-FaceKit OBJ release (FaceXModel folder) to ict_facekit_light.npz.",
    )
    parser.add_argument("--src", required=True, help="FaceXModel folder of a clone of ICT-VGL/ICT-FaceKit")
    parser.add_argument("--out", required=True, help="output .npz file")
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="skip missing identity/expression OBJs instead of failing",
    )
    args = parser.parse_args(argv)
    try:
        arrays = convert(args.src, allow_partial=args.allow_partial)
        out = save_npz_atomic(args.out, arrays)
    except ConvertError as err:
        print(f"ict_convert: error: {err}", file=sys.stderr)
        return 2
    n_id, n_ex = len(arrays["identity_names"]), len(arrays["expression_names"])
    print(f"wrote {out}: {len(arrays['template'])} vertices, {n_id} identity modes, {n_ex} expressions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
