"""Pack ICT-FaceKit's UDIM-style texture tiles into one square atlas.

The original release gives every material its own texture: the face uses u in [0,1], the back of the
head [1,2], gums [2,3], teeth [3,4], lacrimal fluid [4,6], eyelashes [6,7], and the sclera/iris of both
eyes reuse [0,1]. A single texture needs disjoint coordinates, so each material group gets a cell of a
4x4 grid (the face a 2x2 block, top left). Coordinates stay in OBJ convention (v up).
"""

from __future__ import annotations

import torch

# material name -> (column, row from the top, size in cells, udim u offset, u width of the source tile)
ICT_ATLAS_CELLS: dict[str, tuple[int, int, int, float, float]] = {
    "M_Face": (0, 0, 2, 0.0, 1.0),
    "M_BackHead": (2, 0, 1, 1.0, 1.0),
    "M_GumsTongue": (3, 0, 1, 2.0, 1.0),
    "M_Teeth": (2, 1, 1, 3.0, 1.0),
    "M_ScleraLeft": (3, 1, 1, 0.0, 1.0),
    "M_IrisLeft": (0, 2, 1, 0.0, 1.0),
    "M_ScleraRight": (1, 2, 1, 0.0, 1.0),
    "M_IrisRight": (2, 2, 1, 0.0, 1.0),
    "M_LacrimalFluid": (3, 2, 1, 4.0, 2.0),
    "M_EyeBlend": (0, 3, 1, 0.0, 1.0),
    "M_EyeOcclusion": (1, 3, 1, 0.0, 1.0),
    "M_EyeLashes": (2, 3, 1, 6.0, 1.0),
}
GRID = 4
MARGIN = 0.01  # fraction of a cell left empty at each border against bleeding


def pack_atlas(
    uvs: torch.Tensor, face_uvs: torch.Tensor, face_material: torch.Tensor, material_names: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Give every material its own atlas cell.

    Args:
        uvs: (T,2) original texture coordinates (UDIM tiles).
        face_uvs: (F,3) long, uv index per triangle corner.
        face_material: (F,) long, material index per triangle.
        material_names: names for the material indices.

    Returns:
        new_uvs (T2,2) in [0,1] and new_face_uvs (F,3). A uv shared by faces of two materials is split.
    """
    cell = torch.zeros(len(material_names), 5, dtype=uvs.dtype)
    for m, name in enumerate(material_names):
        if name not in ICT_ATLAS_CELLS:
            raise ValueError(f"material '{name}' has no atlas cell; add it to ICT_ATLAS_CELLS")
        cell[m] = torch.tensor(ICT_ATLAS_CELLS[name], dtype=uvs.dtype)
    mat = face_material[:, None].expand_as(face_uvs)  # (F,3)
    # one new uv per distinct (old uv, material) pair
    key = face_uvs.long() * len(material_names) + mat
    uniq, inverse = torch.unique(key.reshape(-1), return_inverse=True)
    old_idx, old_mat = uniq // len(material_names), uniq % len(material_names)
    c = cell[old_mat]  # (T2,5)
    uv = uvs[old_idx]
    local_u = (uv[:, 0] - c[:, 3]) / c[:, 4]
    local_v = uv[:, 1]
    local = torch.stack([local_u, local_v], -1).clamp(0, 1) * (1 - 2 * MARGIN) + MARGIN
    size = c[:, 2:3] / GRID
    u = c[:, 0] / GRID + local[:, 0] * size[:, 0]
    v = 1 - c[:, 1] / GRID - (1 - local[:, 1]) * size[:, 0]
    return torch.stack([u, v], -1), inverse.reshape(face_uvs.shape)
