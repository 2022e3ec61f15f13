"""Mesh regularisers and helpers against slow loop references."""

import src.utils.compat  # noqa: F401  (torchvision shim before Lightning)

# isort: split
import math

import pytest
import torch

from src.losses import (
    edge_length_loss,
    expression_prior,
    identity_prior,
    laplacian_smoothness,
    mesh_edges,
    offset_magnitude,
    uniform_laplacian,
)
from src.utils.assets import AssetNotFoundError, find_asset


def grid_mesh(n: int = 5, quads: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """An n x n vertex grid in the z=0 plane, triangulated (or quads), plus one isolated vertex."""
    ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    verts = torch.stack([xs, ys, torch.zeros_like(xs)], -1).reshape(-1, 3).float() * 0.1
    verts = torch.cat([verts, torch.tensor([[5.0, 5.0, 5.0]])])  # isolated
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j + 1, (i + 1) * n + j
            faces += [[a, b, c, d]] if quads else [[a, b, c], [a, c, d]]
    return verts, torch.tensor(faces)


def edges_loop(faces: torch.Tensor) -> set[tuple[int, int]]:
    out = set()
    for f in faces.tolist():
        for k in range(len(f)):
            a, b = f[k], f[(k + 1) % len(f)]
            out.add((min(a, b), max(a, b)))
    return out


def laplacian_loop(faces: torch.Tensor, V: int) -> torch.Tensor:
    neighbours = [set() for _ in range(V)]
    for a, b in edges_loop(faces):
        neighbours[a].add(b)
        neighbours[b].add(a)
    L = torch.zeros(V, V)
    for i in range(V):
        if neighbours[i]:
            L[i, i] = 1.0
            for j in neighbours[i]:
                L[i, j] = -1.0 / len(neighbours[i])
    return L


@pytest.mark.parametrize("quads", [False, True])
def test_mesh_edges_each_undirected_edge_once(quads):
    _, faces = grid_mesh(4, quads)
    edges = mesh_edges(faces)
    assert edges.dtype == torch.long and (edges[:, 0] < edges[:, 1]).all()
    as_list = [tuple(e) for e in edges.tolist()]
    assert len(as_list) == len(set(as_list))
    assert set(as_list) == edges_loop(faces)
    assert as_list == sorted(as_list)


def test_uniform_laplacian_matches_dense_loop():
    verts, faces = grid_mesh(5)
    V = verts.shape[0]
    L = uniform_laplacian(faces, V)
    assert L.is_sparse and L.shape == (V, V)
    torch.testing.assert_close(L.to_dense(), laplacian_loop(faces, V))


def test_laplacian_smoothness_reference_and_translation_invariance():
    verts, faces = grid_mesh(5)
    V = verts.shape[0]
    L = uniform_laplacian(faces, V)
    g = torch.Generator().manual_seed(0)
    offsets = torch.randn(2, V, 3, generator=g, requires_grad=True)
    value = laplacian_smoothness(offsets, L)
    dense = laplacian_loop(faces, V)
    expected = sum((dense @ offsets[b]).pow(2).sum() for b in range(2)) / (2 * V)
    torch.testing.assert_close(value, expected)
    value.backward()
    assert offsets.grad is not None and offsets.grad.abs().sum() > 0
    constant = torch.tensor([0.3, -1.0, 2.0]).expand(2, V, 3)
    assert laplacian_smoothness(constant, L).item() < 1e-12
    # a translated mesh has the same Laplacian coordinates, float64 follows the input
    shifted = verts[None].double() + torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    out = laplacian_smoothness(shifted, L)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, laplacian_smoothness(verts[None].double(), L))


def rotation(axis: torch.Tensor, angle: float) -> torch.Tensor:
    k = axis / axis.norm()
    K = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return torch.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def test_edge_length_loss_rigid_zero_stretch_positive_and_reference():
    verts, faces = grid_mesh(4)
    edges = mesh_edges(faces)
    R = rotation(torch.tensor([0.3, -1.0, 0.5]), 0.7)
    moved = (verts @ R.T + torch.tensor([0.1, -2.0, 3.0]))[None]
    assert edge_length_loss(moved, verts, edges).item() < 1e-10
    assert edge_length_loss(moved, verts[None].expand(1, -1, -1), edges).item() < 1e-10
    stretched = verts * torch.tensor([1.5, 1.0, 1.0])
    assert edge_length_loss(stretched[None], verts, edges).item() > 1e-4

    g = torch.Generator().manual_seed(1)
    batch = verts + 0.05 * torch.randn(3, *verts.shape, generator=g)
    total, count = 0.0, 0
    for b in range(3):
        for i, j in edges.tolist():
            d = (batch[b, i] - batch[b, j]).norm() - (verts[i] - verts[j]).norm()
            total, count = total + d.item() ** 2, count + 1
    torch.testing.assert_close(edge_length_loss(batch, verts, edges).item(), total / count)
    rel = edge_length_loss(stretched[None], verts, edges, relative=True)
    assert rel.item() > 0


def test_offset_magnitude_and_priors():
    g = torch.Generator().manual_seed(2)
    offsets = torch.randn(2, 7, 3, generator=g)
    w = torch.rand(7, generator=g)
    expected = sum(w[v] * offsets[b, v].pow(2).sum() for b in range(2) for v in range(7)) / 14
    torch.testing.assert_close(offset_magnitude(offsets, w), expected)
    torch.testing.assert_close(offset_magnitude(offsets), offsets.pow(2).sum(-1).mean())
    expr = torch.randn(3, 5, generator=g)
    torch.testing.assert_close(expression_prior(expr), (expr**2).sum() / 15)
    ident = torch.randn(10, generator=g)
    torch.testing.assert_close(identity_prior(ident), (ident**2).sum() / 10)
    assert expression_prior(torch.zeros(2, 4)).item() == 0.0


@pytest.fixture
def ict(request):
    """The session's ICT head model, or a skip when the asset is missing."""
    try:
        find_asset("ict_facekit/ict_facekit_light.npz")
    except AssetNotFoundError:
        pytest.skip("ICT-FaceKit asset not available (set AVATAR_ASSETS)")
    return request.getfixturevalue("ict_model")


def test_full_ict_mesh_laplacian_is_sparse(ict):
    ict_model = ict
    V = ict_model.template.shape[0]
    L = uniform_laplacian(ict_model.faces, V)
    edges = mesh_edges(ict_model.faces)
    assert L._nnz() == 2 * edges.shape[0] + int((torch.bincount(edges.flatten(), minlength=V) > 0).sum())
    offsets = torch.zeros(2, V, 3, requires_grad=True)
    laplacian_smoothness(offsets + ict_model.template, L).backward()
    assert torch.isfinite(offsets.grad).all()
