"""The head-model interface shared by ICT-FaceKit and FLAME.

Conventions (all head models): metres, +y up, +z out of the face, head roughly centred at the origin.
A rigid head pose (axis-angle rotation about the origin, then translation) is applied on top of the
model's own deformation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from src.core.layout import PARAM_KEYS
from src.headmodel.regions import FOREGROUND_LABELS
from src.headmodel.rotation import axis_angle_to_matrix


class HeadModelError(ValueError):
    """Bad head-model file or bad parameters; the message names the problem and the fix."""


class HeadModel(nn.Module):
    """Base class: identity (shared) + expression and joint pose (per frame) -> vertices.

    Subclasses register these buffers:
        template (V,3) float, faces (F,3) long (triangles), uvs (T,2) float, face_uvs (F,3) long,
        vertex_regions (V,) long, face_regions (F,) long, lmk_faces (68,) long, lmk_bary (68,3) float.
    and set ``n_identity``, ``n_expression``, ``n_joint_pose``, ``expression_names``, ``region_names``.

    Region lists (names from ``region_names``) that avatars, the synthetic generator, tracking overlays,
    exporters and losses read from the head model instead of hard-coding them; subclasses override:
        :attr:`hidden_regions`: regions not rendered by default (base: none).
        :attr:`offset_regions`: regions whose vertices a geometry-refinement network may move (base: all).
        :attr:`hair_regions`: offset regions hair may grow from (base: all offset regions).
        :attr:`region_labels`: region -> segmentation labels (``SEG_LABELS`` names) it may be rendered
            over, for :func:`src.losses.semantic.region_label_matrix` (base: every foreground label).
    """

    n_identity: int
    n_expression: int
    n_joint_pose: int
    expression_names: list[str]
    region_names: list[str]

    def canonical(
        self, identity: torch.Tensor, expression: torch.Tensor, joint_pose: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Deformed vertices before the rigid head pose.

        Args:
            identity: (B,n_identity) or (n_identity,) shared shape coefficients.
            expression: (B,n_expression) expression coefficients.
            joint_pose: (B,n_joint_pose) model-specific joint rotations (FLAME: neck, jaw, eyes), or None.

        Returns:
            (B,V,3) vertices in metres.
        """
        raise NotImplementedError

    def forward(
        self,
        identity: torch.Tensor,
        expression: torch.Tensor,
        rotation: torch.Tensor | None = None,
        translation: torch.Tensor | None = None,
        joint_pose: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Posed vertices.

        Args:
            identity: (B,n_identity) or (n_identity,).
            expression: (B,n_expression).
            rotation: (B,3) axis-angle head rotation about the origin, or None for identity.
            translation: (B,3) translation in metres, or None.
            joint_pose: (B,n_joint_pose) or None.

        Returns:
            (B,V,3) vertices in metres.
        """
        self.check_params(identity, expression, rotation, translation, joint_pose)
        verts = self.canonical(identity, expression, joint_pose)
        if rotation is not None:
            R = axis_angle_to_matrix(rotation)  # (B,3,3)
            verts = verts @ R.transpose(1, 2)
        if translation is not None:
            verts = verts + translation[:, None, :]
        return verts

    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:
        """68 landmark positions from vertices via barycentric embedding.

        Args:
            vertices: (B,V,3).

        Returns:
            (B,68,3).
        """
        return self._surface_points(vertices, self.lmk_faces, self.lmk_bary)

    def _surface_points(
        self, vertices: torch.Tensor, face_ids: torch.Tensor, bary: torch.Tensor
    ) -> torch.Tensor:
        """Points given as triangles ``face_ids`` (P,) and barycentrics ``bary`` (P,3) on vertices (B,V,3)
        -> (B,P,3)."""
        corners = vertices[:, self.faces[face_ids]]  # (B,P,3,3)
        return (corners * bary[None, :, :, None]).sum(dim=2)

    def landmarks478(self, vertices: torch.Tensor) -> torch.Tensor:
        """FaceMesh's 478 points on the surface, where the model carries a dense embedding
        (buffers ``dense_faces`` (478,) and ``dense_bary`` (478,3), see :mod:`src.headmodel.dense`).

        Args:
            vertices: (B,V,3).

        Returns:
            (B,478,3).
        """
        faces = getattr(self, "dense_faces", None)
        if faces is None:
            raise HeadModelError(
                f"{type(self).__name__} has no FaceMesh embedding; run python -m "
                "src.tracking.calibrate_dense or track with tracking.landmarks=68"
            )
        return self._surface_points(vertices, faces, self.dense_bary)

    @property
    def hidden_regions(self) -> list[str]:
        """Regions not rendered by default (e.g. transparent overlays); the base model hides none."""
        return []

    @property
    def offset_regions(self) -> list[str]:
        """Regions whose vertices a geometry-refinement network may move; the base model allows all."""
        return list(self.region_names)

    @property
    def hair_regions(self) -> list[str]:
        """Offset regions hair may grow from (above the brows they may move far, see the mesh avatar's
        offset bounds); the base model: every offset region."""
        return self.offset_regions

    @property
    def region_labels(self) -> dict[str, tuple[str, ...]]:
        """Region name -> the ``SEG_LABELS`` names it may be rendered over (background never).

        The base model allows every foreground label for every region, so a semantic term built from it
        penalises nothing; head models with meaningful parts (ICT-FaceKit, FLAME masks) narrow it.
        """
        return {r: FOREGROUND_LABELS for r in self.region_names}

    def check_frame_params(self, params: Mapping[str, torch.Tensor], source: str = "the subject") -> None:
        """Raise HeadModelError (one line) when per-frame parameters do not fit this head model.

        Args:
            params: the subject's parameters (``PARAM_KEYS``: identity (Ni,), expression (N,Ne),
                joint_pose (N,Nj), ...), e.g. from ``SubjectLayout.read_params``.
            source: what the parameters are, for the message.
        """
        missing = [k for k in PARAM_KEYS if k not in params]
        if missing:
            raise HeadModelError(f"{source}'s parameters lack {missing}; re-run the tracking")
        dims = [
            ("identity", params["identity"].shape[-1], self.n_identity),
            ("expression", params["expression"].shape[-1], self.n_expression),
            ("joint_pose", params["joint_pose"].shape[-1], self.n_joint_pose),
        ]
        wrong = [f"{k} {got} (needs {need})" for k, got, need in dims if got != need]
        if wrong:
            raise HeadModelError(
                f"{source}'s parameters do not fit {type(self).__name__}: {', '.join(wrong)}; they were "
                "fitted with another head model: track the subject with this one (python -m src.tracking "
                "root=<subject> headmodel=<this model>, then data.params_source=tracking) or use that model"
            )

    def region_face_mask(self, regions: list[str]) -> torch.Tensor:
        """(F,) bool mask of faces that belong to any of the named regions."""
        unknown = [r for r in regions if r not in self.region_names]
        if unknown:
            raise HeadModelError(f"unknown regions {unknown}; this head model has {self.region_names}")
        ids = torch.tensor([self.region_names.index(r) for r in regions], device=self.face_regions.device)
        return torch.isin(self.face_regions, ids)

    def check_params(self, identity, expression, rotation=None, translation=None, joint_pose=None) -> None:
        """Raise HeadModelError on wrong dimension counts or non-finite values."""
        checks = [
            ("identity", identity, self.n_identity),
            ("expression", expression, self.n_expression),
            ("rotation", rotation, 3),
            ("translation", translation, 3),
            ("joint_pose", joint_pose, self.n_joint_pose),
        ]
        for name, t, n in checks:
            if t is None:
                continue
            if t.shape[-1] != n:
                raise HeadModelError(
                    f"{name} has {t.shape[-1]} coefficients but {type(self).__name__} expects {n}; "
                    f"pass a tensor of shape (B,{n})"
                )
            if not torch.isfinite(t).all():
                raise HeadModelError(
                    f"{name} contains NaN or Inf values; check the optimiser or the input file"
                )
