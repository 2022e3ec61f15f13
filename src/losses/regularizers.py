"""Regularisers on per-vertex offsets, deformed meshes and model parameters, plus mesh helpers."""

from __future__ import annotations

import torch


def mesh_edges(faces: torch.Tensor) -> torch.Tensor:
    """Undirected edges of a polygon mesh, each once.

    Args:
        faces: (F,k) long vertex indices (k = 3 for triangles, 4 for quads; polygon edges are consecutive
            corners plus last -> first).

    Returns:
        (E,2) long with ``edges[:, 0] < edges[:, 1]``, sorted lexicographically, no duplicates.
    """
    if faces.ndim != 2 or faces.shape[1] < 2:
        raise ValueError(f"faces must be (F,k) with k >= 2, got {tuple(faces.shape)}")
    faces = faces.long()
    pairs = torch.stack([faces, faces.roll(-1, dims=1)], dim=-1).reshape(-1, 2)  # (F*k,2)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]  # degenerate corners
    pairs = torch.sort(pairs, dim=1).values
    n = int(pairs.max()) + 1 if pairs.numel() else 1
    key = torch.unique(pairs[:, 0] * n + pairs[:, 1])  # 1D unique (sorted) is much faster than dim=0
    return torch.stack([key // n, key % n], dim=1)


def uniform_laplacian(faces: torch.Tensor, V: int) -> torch.Tensor:
    """Uniform graph Laplacian ``L = I - D^-1 A`` of a mesh as a sparse matrix.

    ``(L @ x)_i = x_i - mean_{j in N(i)} x_j`` over the one-ring neighbours; rows of isolated vertices
    (in no face) are zero. Rows sum to 0, so constant fields (a translation) map to 0.

    Args:
        faces: (F,k) long faces.
        V: number of vertices (indices must be < V).

    Returns:
        (V,V) coalesced sparse COO float32 tensor on ``faces.device``; cast/move with ``.to()``.
    """
    edges = mesh_edges(faces)
    if edges.numel() and int(edges.max()) >= V:
        raise ValueError(f"faces index vertex {int(edges.max())} but V = {V}")
    rows = torch.cat([edges[:, 0], edges[:, 1]])
    cols = torch.cat([edges[:, 1], edges[:, 0]])
    deg = torch.bincount(rows, minlength=V).float()
    has = torch.nonzero(deg > 0).squeeze(1)
    idx = torch.cat([torch.stack([rows, cols]), torch.stack([has, has])], dim=1)
    val = torch.cat([-1.0 / deg[rows], torch.ones(has.numel(), device=faces.device)])
    return torch.sparse_coo_tensor(idx, val, (V, V), check_invariants=False).coalesce()


def laplacian_smoothness(offsets: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Mean squared norm of the Laplacian of per-vertex offsets (or positions).

    Args:
        offsets: (B,V,3) per-vertex vectors.
        L: (V,V) sparse (or dense) Laplacian from :func:`uniform_laplacian`.

    Returns:
        () scalar ``mean_{b,v} |(L @ offsets[b])_v|^2``; 0 for offsets constant over each connected part.
    """
    B, V, C = offsets.shape
    if L.device != offsets.device or L.dtype != offsets.dtype:
        L = L.to(device=offsets.device, dtype=offsets.dtype)
    x = offsets.permute(1, 0, 2).reshape(V, B * C)  # one sparse matmul for the whole batch
    lx = torch.sparse.mm(L, x) if L.is_sparse else L @ x
    return lx.pow(2).sum() / (B * V)


def edge_length_loss(
    verts: torch.Tensor,
    template_verts: torch.Tensor,
    edges: torch.Tensor,
    relative: bool = False,
) -> torch.Tensor:
    """Mean squared change of edge lengths between a deformed mesh and its template.

    Args:
        verts: (B,V,3) deformed vertices.
        template_verts: (B,V,3) or (V,3) reference vertices.
        edges: (E,2) long from :func:`mesh_edges`.
        relative: divide each length change by the template length (strain instead of metres).

    Returns:
        () scalar ``mean_{b,e} (|v_i - v_j| - |t_i - t_j|)^2``; 0 for rigid motions of the template.
    """
    if template_verts.ndim == 2:
        template_verts = template_verts[None]
    i, j = edges[:, 0], edges[:, 1]
    length = (verts[:, i] - verts[:, j]).norm(dim=-1)  # (B,E)
    ref = (template_verts[:, i] - template_verts[:, j]).norm(dim=-1).to(length)  # (1|B,E)
    change = length - ref
    if relative:
        change = change / ref.clamp_min(1e-12)
    return change.pow(2).mean()


def offset_magnitude(offsets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean (optionally per-vertex weighted) squared norm of vertex offsets.

    Args:
        offsets: (B,V,3) offsets.
        weights: optional (V,) per-vertex multipliers (e.g. 0 where offsets are free, larger on the
            eyeballs); the mean is over all B*V vertices, so weights act as multipliers, not a
            re-normalised average.

    Returns:
        () scalar ``mean_{b,v} w_v |o_{b,v}|^2``.
    """
    sq = offsets.pow(2).sum(-1)  # (B,V)
    if weights is not None:
        sq = sq * weights.to(sq)
    return sq.mean()


def expression_prior(expr: torch.Tensor) -> torch.Tensor:
    """Mean square of expression coefficients (a zero-mean Gaussian prior).

    Args:
        expr: (B,Ne) expression coefficients.

    Returns:
        () scalar.
    """
    return expr.pow(2).mean()


def identity_prior(identity: torch.Tensor) -> torch.Tensor:
    """Mean square of identity (shape) coefficients.

    Args:
        identity: (Ni,) (or (B,Ni)) identity coefficients.

    Returns:
        () scalar.
    """
    return identity.pow(2).mean()
