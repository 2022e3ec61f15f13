"""Midpoint subdivision of a head model's mesh (denser geometry for the refinement network).

Each triangle (a,b,c) is split into four by its edge midpoints ab, bc, ca; an edge shared by two triangles
gets one new vertex. Original vertices keep their indices 0..V-1 and the new ones follow, one per unique
edge in lexicographic order of its (smaller, larger) endpoint pair, so per-vertex data of the base mesh
(landmark vertices, ground-truth vertices, tracking indices) stays valid on the first V rows. The four
children of triangle f are rows 4f..4f+3: (a,ab,ca), (ab,b,bc), (ca,bc,c), (ab,bc,ca), with the parent's
winding. Texture coordinates are split the same way over ``face_uvs``: an edge on a UV seam has two UV
edges and so two new UVs, one per side.

Midpoint subdivision is linear (new = S @ old) and keeps the surface exactly where it was, so it commutes
with blendshapes, skinning and the rigid pose: :class:`SubdividedHeadModel` evaluates its base model and
appends the midpoints. (The original NHA also refines an upsampled mesh: FLAME, 5,023 -> 16,227 vertices.)
ICT-FaceKit light goes from 26,719 vertices / 52,220 triangles to 105,569 / 208,880
after one level and to 419,929 / 835,520 after two.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hydra
import torch

from src.headmodel.base import HeadModel, HeadModelError

MAX_LEVELS = 2  # each level multiplies the triangles by 4; level 2 on ICT is already 835k triangles

# Non-tensor attributes and methods passed through to the base model when it has them (ICT-FaceKit:
# named expressions for presets, materials for texture baking).
FORWARDED = ("expression_vector", "expression_index", "material_names", "scale", "path")
# Vertex-index buffers of the base model; valid unchanged since the base vertices keep their indices.
VERTEX_INDEX_BUFFERS = ("landmark_vertices", "rigid_landmarks", "rigid_vertices", "fitting_vertices")


def _split(tris: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Midpoint-split index triangles.

    Args:
        tris: (F,3) long indices into n points.
        n: number of points.

    Returns:
        tris4 (4F,3) long, edges (E,2) long (sorted endpoint pairs, lexicographic; point n+k is the
        midpoint of edges[k]) and slot (F,3) long, the edge index of the triangle's edges ab, bc, ca.
    """
    tris = tris.long()
    ends = torch.stack([tris, tris.roll(-1, dims=1)], -1)  # (F,3,2): ab, bc, ca
    lo, hi = ends.min(-1).values, ends.max(-1).values
    keys, slot = torch.unique(lo * n + hi, return_inverse=True)  # sorted: lexicographic in (lo, hi)
    edges = torch.stack([keys // n, keys % n], 1)
    a, b, c = tris.unbind(1)
    ab, bc, ca = (slot + n).unbind(1)
    children = [(a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca)]
    tris4 = torch.stack([torch.stack(ch, 1) for ch in children], 1).reshape(-1, 3)
    return tris4, edges, slot


def midpoint_subdivision(
    faces: torch.Tensor, face_uvs: torch.Tensor, n_vertices: int, n_uvs: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level of midpoint subdivision of a mesh with per-corner texture coordinates.

    Args:
        faces: (F,3) long vertex indices.
        face_uvs: (F,3) long uv indices of the same corners.
        n_vertices: V, the number of vertices (unused ones allowed).
        n_uvs: T, the number of uvs.

    Returns:
        faces4 (4F,3) and face_uvs4 (4F,3) long; edges (E,2) long: vertex V+k is the midpoint of
        edges[k] (V' = V + E); uv_edges (Eu,2) long: uv T+k is the midpoint of uv_edges[k]. The vertex
        and uv matrices are :func:`subdivision_matrix` of them.
    """
    if faces.shape != face_uvs.shape or faces.ndim != 2 or faces.shape[1] != 3:
        raise HeadModelError(
            f"faces {tuple(faces.shape)} and face_uvs {tuple(face_uvs.shape)} must both be (F,3)"
        )
    faces4, edges, _ = _split(faces, n_vertices)
    face_uvs4, uv_edges, _ = _split(face_uvs, n_uvs)
    return faces4, face_uvs4, edges, uv_edges


def subdivision_matrix(edges: torch.Tensor, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The sparse (n+E, n) matrix S with S @ points = points followed by the edge midpoints.

    Args:
        edges: (E,2) long endpoint pairs (from :func:`midpoint_subdivision`).
        n: number of points before subdivision.

    Returns:
        (n+E, n) sparse COO tensor: identity on the first n rows, 0.5 at both endpoints of each edge below.
    """
    E = edges.shape[0]
    rows = torch.cat([torch.arange(n), torch.arange(n, n + E).repeat_interleave(2)])
    cols = torch.cat([torch.arange(n), edges.reshape(-1).cpu()])
    vals = torch.cat([torch.ones(n, dtype=dtype), torch.full((2 * E,), 0.5, dtype=dtype)])
    S = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n + E, n), check_invariants=True)
    return S.coalesce()


def append_midpoints(x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Per-point data followed by its edge midpoints.

    Args:
        x: (..., n, C) values at the n points (positions, uvs, any linear attribute).
        edges: (E,2) long.

    Returns:
        (..., n+E, C).
    """
    mid = 0.5 * (x[..., edges[:, 0], :] + x[..., edges[:, 1], :])
    return torch.cat([x, mid], dim=-2)


def edge_regions(slot: torch.Tensor, face_regions: torch.Tensor, n_edges: int) -> torch.Tensor:
    """Region of each edge's midpoint: the smallest region id among the triangles sharing the edge.

    This is the rule ICT-FaceKit's own labels follow (a vertex on a region boundary belongs to the region
    with the smaller id, e.g. the face rather than the neck), so a midpoint inside a region gets that
    region and one on a region boundary gets the same label as the boundary's original vertices.

    Args:
        slot: (F,3) long edge index of each triangle edge (from :func:`_split`).
        face_regions: (F,) long.
        n_edges: E.

    Returns:
        (E,) long.
    """
    init = torch.full((n_edges,), torch.iinfo(torch.long).max, dtype=torch.long, device=slot.device)
    src = face_regions[:, None].expand_as(slot).reshape(-1)
    return init.scatter_reduce(0, slot.reshape(-1), src, reduce="amin")


def remap_barycentric(lmk_faces: torch.Tensor, lmk_bary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move barycentric embeddings into the child triangle holding the same point.

    Args:
        lmk_faces: (L,) long parent triangles.
        lmk_bary: (L,3) barycentrics (w_a, w_b, w_c) in them.

    Returns:
        (L,) long child triangles (rows of ``faces4``) and (L,3) barycentrics in them: a point with
        w_i >= 0.5 lies in the corner child of vertex i, else in the middle child (ab,bc,ca).
    """
    w = lmk_bary
    corner = w.argmax(-1)
    in_corner = w.gather(-1, corner[:, None])[:, 0] >= 0.5
    # corner child i holds the parent corner i at its position i and the two adjacent midpoints
    corner_bary = 2 * w - torch.nn.functional.one_hot(corner, 3).to(w)
    middle_bary = 1 - 2 * w[:, [2, 0, 1]]  # (ab,bc,ca) weights: 1-2w_c, 1-2w_a, 1-2w_b
    child = torch.where(in_corner, corner, torch.full_like(corner, 3))
    bary = torch.where(in_corner[:, None], corner_bary, middle_bary)
    return lmk_faces * 4 + child, bary


class SubdividedHeadModel(HeadModel):
    """Any head model on a midpoint-subdivided mesh (same parameters, same surface, more vertices).

    Buffers (non-persistent, rebuilt at construction): template (V',3), faces (F',3), uvs (T',2),
    face_uvs (F',3), vertex_regions (V',), face_regions (F',), lmk_faces (68,), lmk_bary (68,3),
    edges (E,2) (all levels in order: vertex V_l + k of level l is the midpoint of that level's k-th
    edge), plus face_material (F',) and the base's vertex-index buffers (landmark_vertices, ...) when the
    base has them. Children inherit their parent triangle's region (and material); a new vertex takes the
    smallest region of the triangles sharing its edge (:func:`edge_regions`); original vertices keep
    theirs. Landmarks are re-embedded in the child triangles, so they land exactly where the base model's do.

    Attributes: n_identity, n_expression, n_joint_pose, expression_names, region_names and the region lists
    (hidden_regions, offset_regions, region_labels) as the base;
    ``n_base_vertices`` (V of the base: the first V rows of every vertex tensor are the base's vertices,
    so compare with base-model ground truth on ``[:, :n_base_vertices]``); ``levels``; ``base``.

    Args:
        base: a HeadModel, or a Hydra config of one (instantiated here).
        levels: subdivision levels, 0 (the base mesh), 1 or 2.
    """

    def __init__(self, base: HeadModel | Any, levels: int = 1) -> None:
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, int) or not 0 <= levels <= MAX_LEVELS:
            raise HeadModelError(
                f"levels={levels!r} is not supported; use 0, 1 or {MAX_LEVELS} (each level: 4x the triangles)"
            )
        if isinstance(base, Mapping):  # a dict or DictConfig with _target_
            base = hydra.utils.instantiate(base)
        if not isinstance(base, HeadModel):
            raise HeadModelError(f"base must be a HeadModel or its config, got {type(base).__name__}")
        self.base = base
        self.levels = levels
        self.n_identity, self.n_expression = base.n_identity, base.n_expression
        self.n_joint_pose = base.n_joint_pose
        self.expression_names, self.region_names = list(base.expression_names), list(base.region_names)
        self.n_base_vertices = int(base.template.shape[0])

        faces, face_uvs, uvs = base.faces, base.face_uvs, base.uvs
        vregions, fregions = base.vertex_regions, base.face_regions
        lmk_faces, lmk_bary = base.lmk_faces, base.lmk_bary
        material = getattr(base, "face_material", None)
        n, all_edges, self.level_edges = self.n_base_vertices, [], []
        with torch.no_grad():
            for _ in range(levels):
                faces, edges, slot = _split(faces, n)
                face_uvs, uv_edges, _ = _split(face_uvs, uvs.shape[0])
                uvs = append_midpoints(uvs, uv_edges)
                vregions = torch.cat([vregions, edge_regions(slot, fregions, len(edges))])
                fregions = fregions.repeat_interleave(4)
                material = None if material is None else material.repeat_interleave(4)
                lmk_faces, lmk_bary = remap_barycentric(lmk_faces, lmk_bary)
                all_edges.append(edges)
                self.level_edges.append(len(edges))
                n += len(edges)
        empty = torch.zeros(0, 2, dtype=torch.long, device=faces.device)
        buffers = {
            "edges": torch.cat([empty, *all_edges]),
            "faces": faces,
            "uvs": uvs,
            "face_uvs": face_uvs,
            "vertex_regions": vregions,
            "face_regions": fregions,
            "lmk_faces": lmk_faces,
            "lmk_bary": lmk_bary,
        }
        if material is not None:
            buffers["face_material"] = material
        for name in VERTEX_INDEX_BUFFERS:
            if isinstance(getattr(base, name, None), torch.Tensor):
                buffers[name] = getattr(base, name)
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)
        self.register_buffer("template", self.upsample(base.template[None])[0], persistent=False)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # parameters, buffers, submodules
        except AttributeError:
            if name in FORWARDED:
                return getattr(self._modules["base"], name)
            raise

    @property
    def hidden_regions(self) -> list[str]:
        """The base model's (the regions are the same)."""
        return self.base.hidden_regions

    @property
    def offset_regions(self) -> list[str]:
        """The base model's (midpoints inherit regions, so the same surface is refined)."""
        return self.base.offset_regions

    @property
    def hair_regions(self) -> list[str]:
        """The base model's."""
        return self.base.hair_regions

    @property
    def region_labels(self) -> dict[str, tuple[str, ...]]:
        """The base model's."""
        return self.base.region_labels

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        """Per-vertex data of the base mesh on the subdivided mesh (linear: midpoints of midpoints).

        Args:
            x: (..., V, C) values at the base vertices.

        Returns:
            (..., V', C).
        """
        start = 0
        for count in self.level_edges:
            x = append_midpoints(x, self.edges[start : start + count])
            start += count
        return x

    def subdivision_matrix(self) -> torch.Tensor:
        """The sparse (V',V) matrix S of all levels: ``canonical = S @ base.canonical``."""
        n = self.n_base_vertices
        S = subdivision_matrix(self.edges[:0].cpu(), n)  # the identity
        start = 0
        for count in self.level_edges:
            e = self.edges[start : start + count].cpu()
            S = torch.cat([S, 0.5 * (S.index_select(0, e[:, 0]) + S.index_select(0, e[:, 1]))])
            start += count
        return S.coalesce()

    def canonical(
        self, identity: torch.Tensor, expression: torch.Tensor, joint_pose: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The base model's canonical vertices with the midpoints appended.

        Args:
            identity: (B,n_identity) or (n_identity,); expression: (B,n_expression);
            joint_pose: (B,n_joint_pose) or None.

        Returns:
            (B,V',3) vertices in metres; the first ``n_base_vertices`` are the base model's.
        """
        return self.upsample(self.base.canonical(identity, expression, joint_pose))
