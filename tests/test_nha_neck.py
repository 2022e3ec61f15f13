"""Mesh avatar: the neck joint (head turns on the neck, the torso below stays upright)."""

from __future__ import annotations

import math

import pytest
import torch

from src.headmodel.rotation import axis_angle_to_matrix
from src.models.nha.neck import neck_weights, skin_neck


def test_skin_neck_against_a_loop_over_vertices():
    g = torch.Generator().manual_seed(0)
    verts = torch.randn(2, 7, 3, generator=g)
    R = axis_angle_to_matrix(0.4 * torch.randn(2, 3, generator=g))
    t = torch.randn(2, 3, generator=g)
    w = torch.rand(7, generator=g)
    p = torch.randn(3, generator=g)
    out = skin_neck(verts, R, t, w, p)
    for b in range(2):  # slow reference: one vertex at a time
        for v in range(7):
            head = R[b] @ verts[b, v] + t[b]
            torso = verts[b, v] + t[b] + R[b] @ p - p
            torch.testing.assert_close(out[b, v], w[v] * head + (1 - w[v]) * torso)
    rigid = skin_neck(verts, R, t, None, None)
    torch.testing.assert_close(rigid, verts @ R.transpose(1, 2) + t[:, None])
    # head and torso agree at the pivot: the neck never tears
    at_pivot = p.expand(2, 2, 3).clone()
    torch.testing.assert_close(
        skin_neck(at_pivot, R, t, torch.tensor([1.0, 0.0]), p)[:, 0],
        skin_neck(at_pivot, R, t, torch.tensor([1.0, 0.0]), p)[:, 1],
    )


def test_neck_weights_keep_the_face_on_the_head_and_the_shoulders_upright(ict_model):
    hm = ict_model
    t, lm = hm.template, hm.landmarks(hm.template[None])[0]
    w, pivot = neck_weights(t, lm, hm.faces, length=0.5, smooth=2)
    assert w.shape == (t.shape[0],) and w.min() >= 0 and w.max() <= 1
    chin = lm[8, 1]
    assert torch.all(w[t[:, 1] > chin + 0.01] == 1)  # everything above the chin turns with the head
    bottom = t[:, 1] < t[:, 1].min() + 0.2 * (chin - t[:, 1].min())
    assert bottom.any() and torch.all(w[bottom] == 0)  # the shoulders do not
    assert abs(pivot[1] - chin) < 1e-6 and abs(pivot[0]) < 1e-3
    # a 30 degree roll: the face follows exactly, the shoulders' height stays
    R = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.radians(30)]]))
    zero = torch.zeros(1, 3)
    posed = skin_neck(t[None], R, zero, w, pivot)[0]
    face = t[:, 1] > chin + 0.01
    torch.testing.assert_close(posed[face], (t[face] @ R[0].T))
    shift = (R[0] - torch.eye(3)) @ pivot
    torch.testing.assert_close(posed[bottom], t[bottom] + shift)
    rigid = t @ R[0].T
    left, right = bottom & (t[:, 0] > 0.08), bottom & (t[:, 0] < -0.08)
    tilt = lambda v: (v[left, 1].mean() - v[right, 1].mean()).abs()  # noqa: E731
    assert tilt(posed) < 1e-3 < 0.05 < tilt(rigid)
    with pytest.raises(ValueError, match="neck.length"):
        neck_weights(t, lm, hm.faces, length=0.0)
