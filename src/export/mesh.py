"""Export an avatar's personalised mesh with a baked texture as OBJ+MTL+PNG and as GLB.

Geometry: ``model.personalized_vertices(expression)`` (canonical, unposed: the refined mesh in the head
model's frame: metres, +y up, +z out of the face, which are also glTF's units and axes). Texture:
``model.bake_texture(size, expression)`` in the head model's single square UV atlas (row 0 at v = 1).
Both come from :class:`src.models.avatar.AvatarMixin`, so any avatar implementing it exports.

Positions are per vertex and UVs per triangle corner (``faces`` / ``face_uvs``), which OBJ stores as
they are (``f v/vt/vn``). glTF needs one UV per vertex, so the GLB splits vertices along UV seams: its
vertices are the unique (vertex, uv) pairs of the triangle corners, more than the OBJ's vertices, with
the same set of positions.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.reenact.pipeline import expression_range
from src.reenact.presets import load_presets, mix_presets, preset_vectors
from src.render import vertex_normals
from src.utils.io import atomic_write, to_uint8, write_json, write_png

log = logging.getLogger(__name__)

FORMATS = ("obj", "glb")


class ExportError(ValueError):
    """Bad export settings; the message names the problem and the fix."""


def resolve_expression(model, expression=None, presets: Mapping | None = None) -> tuple[torch.Tensor, str]:
    """The expression vector to export at.

    Args:
        model: the avatar (its ``headmodel``).
        expression: None or "neutral" (zeros); a preset name; a preset mix {name: weight}; or an
            (n_expression,) tensor.
        presets: {preset: {blendshape: weight}}; None reads ``conf/presets/ict.yaml`` when needed.

    Returns:
        ((n_expression,) tensor on the model's device, a label for file names).
    """
    hm = model.headmodel
    device = hm.faces.device
    if torch.is_tensor(expression):
        if expression.shape != (hm.n_expression,):
            raise ExportError(
                f"expression has shape {tuple(expression.shape)}, expected ({hm.n_expression},)"
            )
        return expression.to(device).float(), "custom"
    if expression is None or (expression == "neutral" and not (presets and "neutral" in presets)):
        return torch.zeros(hm.n_expression, device=device), "neutral"
    mix = (
        {str(expression): 1.0}
        if isinstance(expression, str)
        else {str(k): float(v) for k, v in expression.items()}
    )
    vectors = preset_vectors(presets if presets is not None else load_presets("ict"), hm)
    label = "_".join(mix) if isinstance(expression, Mapping) else str(expression)
    return mix_presets(vectors, mix, expression_range(hm)).to(device), label


def default_hidden_regions(model) -> list[str]:
    """The head model's ``hidden_regions`` plus those the model itself does not render.

    The head model's list (ICT: transparent overlays and eyelash shells, opaque in a plain textured mesh;
    FLAME: none) is what avatars hide when their own list is null. A model's explicit list is
    ``hparams.hidden_regions`` (VertexColorAvatar) or a ``hidden_regions`` entry one level down (e.g.
    ``hparams.net.hidden_regions``): regions it never rendered have no learned colour. Names the head model
    lacks are dropped.
    """
    hparams = getattr(model, "hparams", None) or {}
    own = []
    if isinstance(hparams, Mapping):
        nested = [v for v in hparams.values() if isinstance(v, Mapping)]
        for level in (hparams, *nested):
            own += list(level.get("hidden_regions") or [])
    names = set(model.headmodel.region_names)
    return [r for r in dict.fromkeys([*model.headmodel.hidden_regions, *own]) if r in names]


def split_uv_seams(faces: np.ndarray, face_uvs: np.ndarray, uvs: np.ndarray):
    """One vertex per unique (position index, uv value) pair of the triangle corners (for glTF).

    UV rows with equal values are merged first, so no two output vertices share both position index and
    uv (a loader that merges identical vertices keeps them all).

    Args:
        faces: (F,3) vertex indices; face_uvs: (F,3) uv indices; uvs: (T,2).

    Returns:
        vertex_of (P,) source vertex of each new vertex, uv_of (P,2) its uv, new_faces (F,3).
    """
    _, uv_id = np.unique(uvs, axis=0, return_inverse=True)
    corners = np.stack([faces.reshape(-1), uv_id.reshape(-1)[face_uvs.reshape(-1)]], 1)  # (3F,2)
    pairs, inverse = np.unique(corners, axis=0, return_inverse=True)
    first_t = np.zeros(len(pairs), dtype=np.int64)
    first_t[inverse.reshape(-1)] = face_uvs.reshape(-1)
    return pairs[:, 0], uvs[first_t], inverse.reshape(faces.shape)


def _compact(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Used ids (U,) and ``index`` renumbered into 0..U-1."""
    used, inverse = np.unique(index, return_inverse=True)
    return used, inverse.reshape(index.shape)


def _obj_text(name: str, verts, uvs, normals, faces, face_uvs, mtl_name: str, header: str) -> str:
    buf = io.StringIO()
    buf.write(f"# {header}\nmtllib {mtl_name}\no {name}\n")
    np.savetxt(buf, verts, fmt="v %.6f %.6f %.6f")
    np.savetxt(buf, uvs, fmt="vt %.6f %.6f")
    np.savetxt(buf, normals, fmt="vn %.4f %.4f %.4f")
    buf.write(f"usemtl {name}\ns 1\n")
    f = np.stack([faces, face_uvs, faces], -1).reshape(len(faces), 9) + 1  # OBJ indices are 1-based
    np.savetxt(buf, f, fmt="f %d/%d/%d %d/%d/%d %d/%d/%d")
    return buf.getvalue()


def _mtl_text(name: str, texture_name: str) -> str:
    return (
        f"# selfie-avatar material\nnewmtl {name}\nKa 1.000 1.000 1.000\nKd 1.000 1.000 1.000\n"
        f"Ks 0.000 0.000 0.000\nNs 1.0\nd 1.0\nillum 1\nmap_Kd {texture_name}\n"
    )


def _glb_bytes(name: str, verts, uvs, normals, faces, texture: np.ndarray) -> bytes:
    import trimesh
    from PIL import Image

    material = trimesh.visual.material.PBRMaterial(
        name=name, baseColorTexture=Image.fromarray(texture), metallicFactor=0.0, roughnessFactor=1.0
    )
    mesh = trimesh.Trimesh(
        vertices=verts, faces=faces, vertex_normals=normals, process=False,
        visual=trimesh.visual.TextureVisuals(uv=uvs, material=material),
    )  # fmt: skip
    return trimesh.Scene({name: mesh}).export(file_type="glb")


@torch.no_grad()
def export_mesh(
    model,
    out_dir: str | Path,
    expression=None,
    texture_size: int = 1024,
    formats: Sequence[str] = FORMATS,
    hidden_regions: Sequence[str] | None = None,
    presets: Mapping | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Write the personalised mesh with its baked texture.

    Files (each written atomically): ``<name>.obj`` + ``<name>.mtl`` (``map_Kd <name>_texture.png``) +
    ``<name>_texture.png`` for "obj"; ``<name>.glb`` (texture embedded, PBR base colour, metallic 0,
    roughness 1) for "glb"; ``<name>.json`` with the counts below.

    Args:
        model: an avatar implementing ``personalized_vertices`` and ``bake_texture`` (AvatarMixin).
        out_dir: output folder.
        expression: see :func:`resolve_expression` (default neutral).
        texture_size: texture side in pixels.
        formats: any of "obj", "glb".
        hidden_regions: head-model regions left out; None: :func:`default_hidden_regions`; [] keeps all.
        presets: preset definitions for a named expression (default ``conf/presets/ict.yaml``).
        name: file stem (default ``avatar_<expression>``).

    Returns:
        dict with the paths written ("obj", "mtl", "texture", "glb", "json"), "n_vertices" (vertices the
        OBJ holds: those used by the kept faces), "n_faces" (kept triangles), "n_glb_vertices" (unique
        (vertex, uv) pairs: the GLB's vertex count), "expression" (label) and "hidden_regions".
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"unknown export formats {bad or formats}; use any of {list(FORMATS)}")
    if int(texture_size) < 8:
        raise ExportError(f"texture_size={texture_size} is too small; use e.g. 1024")
    hm = model.headmodel
    expr, label = resolve_expression(model, expression, presets)
    name = name or f"avatar_{label}"
    hidden = default_hidden_regions(model) if hidden_regions is None else list(hidden_regions)
    keep = ~hm.region_face_mask(hidden) if hidden else torch.ones_like(hm.face_regions, dtype=torch.bool)

    verts_all = model.personalized_vertices(expr[None])[0].float()  # (V,3)
    faces_t = hm.faces[keep]
    normals_all = vertex_normals(verts_all[None], faces_t)[0]
    texture = model.bake_texture(int(texture_size), expr)  # (3,S,S)
    tex_u8 = to_uint8(texture.permute(1, 2, 0))

    used_v, faces = _compact(faces_t.cpu().numpy())
    used_t, face_uvs = _compact(hm.face_uvs[keep].cpu().numpy())
    verts = verts_all.cpu().numpy()[used_v].astype(np.float64)
    normals = normals_all.cpu().numpy()[used_v].astype(np.float64)
    uvs = hm.uvs.cpu().numpy()[used_t].astype(np.float64)
    out, result = Path(out_dir), {"expression": label, "hidden_regions": hidden}
    result.update(n_vertices=len(verts), n_faces=len(faces))

    if "obj" in formats:
        tex_name, mtl_name = f"{name}_texture.png", f"{name}.mtl"
        header = f"selfie-avatar export: {len(verts)} vertices, {len(faces)} triangles, metres, +y up"
        text = _obj_text(name, verts, uvs, normals, faces, face_uvs, mtl_name, header)
        result["texture"] = write_png(out / tex_name, tex_u8)
        result["mtl"] = atomic_write(out / mtl_name, lambda p: p.write_text(_mtl_text(name, tex_name)))
        result["obj"] = atomic_write(out / f"{name}.obj", lambda p: p.write_text(text))
    vertex_of, uv_of, glb_faces = split_uv_seams(faces, face_uvs, uvs)
    result["n_glb_vertices"] = len(vertex_of)
    if "glb" in formats:
        data = _glb_bytes(name, verts[vertex_of], uv_of, normals[vertex_of], glb_faces, tex_u8)
        result["glb"] = atomic_write(out / f"{name}.glb", lambda p: p.write_bytes(data))
    summary = {k: v for k, v in result.items() if not isinstance(v, Path)}
    summary.update(
        texture_size=int(texture_size),
        expression_weights=expr.cpu().tolist(),
        units="metres, +y up, +z out of the face",
    )
    result["json"] = write_json(out / f"{name}.json", summary)
    log.info("exported %s (%d vertices, %d triangles) to %s", name, len(verts), len(faces), out)
    return result
