"""Linear blend skinning with pose-corrective blendshapes (the SMPL/FLAME deformation model).

v_shaped = template + dirs @ coeffs; joints = J_regressor @ v_shaped;
v_posed = v_shaped + posedirs @ flatten(R_j - I for non-root joints j);
v = sum_j w_j (G_j v_posed + t_j), with (G_j, t_j) the world transform of joint j relative to its rest pose.
"""

from __future__ import annotations

import torch


def blend_shapes(coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Linear blendshape offsets.

    Args:
        coeffs: (B,K) coefficients.
        dirs: (V,3,K) blendshape directions.

    Returns:
        (B,V,3) offsets.
    """
    return torch.einsum("bk,vck->bvc", coeffs, dirs)


def rigid_chain(
    rots: torch.Tensor, joints: torch.Tensor, parents: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Compose joint rotations along the kinematic tree.

    Args:
        rots: (B,J,3,3) local rotation of each joint.
        joints: (B,J,3) rest-pose joint locations.
        parents: J parent indices, parents[0] = -1 and parents[j] < j.

    Returns:
        posed_joints (B,J,3); rel_rot (B,J,3,3) and rel_t (B,J,3), the transform taking a rest-pose point
        attached to joint j to its posed location: x -> rel_rot @ x + rel_t.
    """
    glob_R = [rots[:, 0]]
    glob_t = [joints[:, 0]]
    for j in range(1, len(parents)):
        p = parents[j]
        local_t = joints[:, j] - joints[:, p]
        glob_R.append(glob_R[p] @ rots[:, j])
        glob_t.append(glob_t[p] + (glob_R[p] @ local_t[..., None])[..., 0])
    R = torch.stack(glob_R, dim=1)  # (B,J,3,3)
    posed = torch.stack(glob_t, dim=1)  # (B,J,3)
    rel_t = posed - (R @ joints[..., None])[..., 0]
    return posed, R, rel_t


def lbs(
    coeffs: torch.Tensor,
    rots: torch.Tensor,
    template: torch.Tensor,
    dirs: torch.Tensor,
    posedirs: torch.Tensor,
    J_regressor: torch.Tensor,
    parents: list[int],
    weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape, pose-correct and skin a template mesh.

    Args:
        coeffs: (B,K) shape (and expression) coefficients.
        rots: (B,J,3,3) joint rotations (root first).
        template: (V,3) rest-pose template.
        dirs: (V,3,K) blendshape directions matching ``coeffs``.
        posedirs: (9*(J-1),V*3) pose-corrective blendshapes over flattened (R_j - I), j = 1..J-1.
        J_regressor: (J,V) dense joint regressor.
        parents: J parent indices (parents[0] = -1).
        weights: (V,J) skinning weights.

    Returns:
        vertices (B,V,3) and posed joints (B,J,3).
    """
    B = coeffs.shape[0]
    v_shaped = template + blend_shapes(coeffs, dirs)
    joints = torch.einsum("jv,bvc->bjc", J_regressor, v_shaped)
    eye = torch.eye(3, dtype=rots.dtype, device=rots.device)
    pose_feature = (rots[:, 1:] - eye).reshape(B, -1)
    v_posed = v_shaped + (pose_feature @ posedirs).view(B, -1, 3)
    posed_joints, rel_R, rel_t = rigid_chain(rots, joints, parents)
    T_R = torch.einsum("vj,bjrc->bvrc", weights, rel_R)  # (B,V,3,3)
    T_t = torch.einsum("vj,bjc->bvc", weights, rel_t)  # (B,V,3)
    verts = (T_R @ v_posed[..., None])[..., 0] + T_t
    return verts, posed_joints
