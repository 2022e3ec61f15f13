"""Eyeball rotation driven by ARKit's eyeLook blendshape weights (eye gaze for blendshape head models).

ICT-FaceKit's eyeLook{In,Out,Up,Down}_{L,R} blendshapes only reshape the lids around a gaze; the eyeballs
are separate rigid meshes that the blendshapes never move. :class:`GazeRig` turns the same weights into a
rotation of each eyeball about its centre, so that one parameter vector carries lids and eyeballs
together and FaceMesh's iris points (embedded on the eyeballs, :mod:`src.headmodel.dense`) can be fitted
through the expression coefficients:

- horizontal angle of an eye = ``max_deg[0] * (out - in)``, towards the subject's own side for ``out``;
- vertical angle = ``max_deg[1] * (up - down)``;
- the look direction is the rest direction (+z) pitched, then yawed: ``R = R_y(yaw) @ R_x(-pitch)``;
- the centre of rotation is the centre of the sphere fitted to the template's eyeball (least squares),
  carried along with the identity by the mean of the eyeball's vertices.

The angle scale (35 deg horizontal, 25 deg vertical at weight 1) is this project's choice: within the
range people turn their eyes without turning the head; ARKit does not define one.

Coordinates: the ICT convention, metres, +y up, the face looking along +z, the subject's left eye at +x.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# (region, ARKit suffix, sign of "out" along x)
EYES = (("eyeball_left", "_L", 1.0), ("eyeball_right", "_R", -1.0))
LOOKS = ("eyeLookIn", "eyeLookOut", "eyeLookUp", "eyeLookDown")


def sphere_centre(points: torch.Tensor) -> torch.Tensor:
    """Centre (3,) of the least-squares sphere through points (P,3): |p|^2 = 2 c.p + k, solved in float64."""
    p = points.double()
    A = torch.cat([2 * p, torch.ones(len(p), 1, dtype=p.dtype)], 1)
    sol = torch.linalg.lstsq(A, (p**2).sum(1, keepdim=True)).solution
    return sol[:3, 0].to(points.dtype)


def rotation_yx(yaw: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
    """(...,3,3) rotations ``R_y(yaw) @ R_x(-pitch)`` (radians): +z turns up by ``pitch``, then towards +x by
    ``yaw``."""
    cy, sy, cp, sp = yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin()
    zero, one = torch.zeros_like(yaw), torch.ones_like(yaw)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*yaw.shape, 3, 3)
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(*yaw.shape, 3, 3)
    return ry @ rx.transpose(-1, -2)


class GazeRig(nn.Module):
    """Eyeball rotations from eyeLook weights (module docstring).

    Args:
        template: (V,3) template vertices.
        identity_basis: (Ni,V,3) identity modes.
        vertex_regions: (V,) region label of every vertex.
        region_names: the labels' names (needs ``eyeball_left`` and ``eyeball_right``).
        expression_names: the model's expression names (ARKit names; absent eyeLook shapes count as 0).
        max_deg: (horizontal, vertical) eye angle at weight 1, degrees.

    Buffers: ``vertex_eye`` (V,) long: 0 left eyeball, 1 right eyeball, -1 elsewhere; ``centre_tmpl`` (2,3)
    and ``centre_idb`` (Ni,2,3): rotation centres as template + identity @ basis; ``look_index`` (2,4) long
    (in, out, up, down per eye; -1 where the model lacks the shape).
    """

    def __init__(
        self,
        template: torch.Tensor,
        identity_basis: torch.Tensor,
        vertex_regions: torch.Tensor,
        region_names: Sequence[str],
        expression_names: Sequence[str],
        max_deg: Sequence[float] = (35.0, 25.0),
    ) -> None:
        super().__init__()
        if len(max_deg) != 2:
            raise ValueError(f"gaze max_deg needs (horizontal, vertical) degrees, got {list(max_deg)}")
        self.max_rad = tuple(float(torch.deg2rad(torch.tensor(float(d)))) for d in max_deg)
        vertex_eye = torch.full((template.shape[0],), -1, dtype=torch.long)
        centres, idb, looks = [], [], []
        names = list(expression_names)
        for k, (region, suffix, _) in enumerate(EYES):
            sel = vertex_regions == list(region_names).index(region)
            vertex_eye[sel] = k
            centres.append(sphere_centre(template[sel]))
            idb.append(identity_basis[:, sel].mean(1))  # the centre moves with the eyeball's mean
            looks.append([names.index(n + suffix) if n + suffix in names else -1 for n in LOOKS])
        self.register_buffer("vertex_eye", vertex_eye, persistent=False)
        self.register_buffer("centre_tmpl", torch.stack(centres), persistent=False)
        self.register_buffer("centre_idb", torch.stack(idb, 1), persistent=False)
        self.register_buffer("look_index", torch.tensor(looks, dtype=torch.long), persistent=False)
        self.register_buffer("out_sign", torch.tensor([e[2] for e in EYES]), persistent=False)

    @staticmethod
    def available(region_names: Sequence[str]) -> bool:
        """Whether a model with these regions has both eyeballs."""
        return all(e[0] in region_names for e in EYES)

    def centres(self, identity: torch.Tensor) -> torch.Tensor:
        """(B,2,3) rotation centres for identity (B,Ni)."""
        return self.centre_tmpl + torch.einsum("bi,iec->bec", identity, self.centre_idb)

    def angles(self, expression: torch.Tensor) -> torch.Tensor:
        """(B,2,2) (yaw towards +x, pitch up) of each eye, radians, for expression (B,Ne)."""
        padded = torch.cat([expression, expression.new_zeros(expression.shape[0], 1)], 1)  # index -1 -> 0
        w = padded[:, self.look_index]  # (B,2,4) in, out, up, down
        yaw = self.max_rad[0] * (w[..., 1] - w[..., 0]) * self.out_sign
        pitch = self.max_rad[1] * (w[..., 2] - w[..., 3])
        return torch.stack([yaw, pitch], -1)

    def directions(self, expression: torch.Tensor) -> torch.Tensor:
        """(B,2,3) unit look directions of both eyes in the head frame."""
        a = self.angles(expression)
        return rotation_yx(a[..., 0], a[..., 1])[..., :, 2]

    def apply(
        self, points: torch.Tensor, point_eye: torch.Tensor, identity: torch.Tensor, expression: torch.Tensor
    ) -> torch.Tensor:
        """Rotate the points that lie on an eyeball.

        Args:
            points: (B,P,3) canonical points (vertices or surface points).
            point_eye: (P,) long: 0/1 for points on the left/right eyeball, -1 elsewhere.
            identity: (B,Ni).
            expression: (B,Ne).

        Returns:
            (B,P,3), equal to ``points`` off the eyeballs.
        """
        a = self.angles(expression)
        if not bool((a != 0).any()):
            return points
        R = rotation_yx(a[..., 0], a[..., 1])  # (B,2,3,3)
        c = self.centres(identity)  # (B,2,3)
        out = points
        for k in range(2):
            sel = torch.nonzero(point_eye == k).squeeze(1)
            if len(sel) == 0:
                continue
            ck = c[:, k, None]
            rotated = (points[:, sel] - ck) @ R[:, k].transpose(1, 2) + ck
            out = out.index_copy(1, sel, rotated)
        return out
