"""The mesh avatar's loss: twelve named terms, each a callable, weighted by the config (per stage)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from src.core.outputs import Batch, Out
from src.core.streams import landmark_visible, pixel_weight
from src.losses import (
    PerceptualLoss,
    WeightedLoss,
    edge_length_loss,
    expression_prior,
    identity_prior,
    landmark_loss,
    laplacian_normal_loss,
    laplacian_smoothness,
    masked_l1,
    mesh_edges,
    normal_consistency,
    offset_magnitude,
    semantic_loss,
    silhouette_loss,
    uniform_laplacian,
)
from src.render import Cameras

TERMS = (
    "rgb_l1", "perceptual", "silhouette", "landmarks", "normals", "normal_laplacian", "semantic",
    "expression_prior", "identity_prior", "laplacian", "edge_length", "offset_magnitude",
)  # fmt: skip


@dataclass
class FrameState:
    """The per-frame parameters of a batch that the prior and landmark terms see.

    Attributes:
        identity: (Ni,) current identity; prior_identity: (Ni,) its start value.
        expression: (B,Ne) current expressions of the batch; prior_expression: (B,Ne) their start values.
        cameras: the batch's cameras (landmark projection).
    """

    identity: torch.Tensor
    prior_identity: torch.Tensor
    expression: torch.Tensor
    prior_expression: torch.Tensor
    cameras: Cameras


class NHALoss(nn.Module):
    """Term name -> callable over (batch, outputs, frame state); only terms with a weight > 0 are computed.

    Args:
        faces: (F,3) rendered triangles; n_vertices: V; active: (Va,) ids of the vertices with offsets.
        region_allowed: (K,C) bool, which segmentation labels each head-model region may be rendered over
            (the semantic term; see :func:`src.losses.region_label_matrix`).
        landmarks: head-model vertices (B,V,3) -> 3-D landmarks (B,L,3): the 68 iBUG points, or
            FaceMesh's 478 with ``cfg["landmark_points"] == "dense"``.
        cfg: {"weights": {term: weight}, "class_weights": [...] (per SEG_LABELS), "landmark_points": "68" or
            "dense", "landmark_weights": {"jaw": w} (68 points), "perceptual": {...} (PerceptualLoss kwargs)}.
        dense_weights: (478,) per-point weights of the head model's dense embedding (``dense`` only).
        uses_perceptual: build the (frozen, VGG) perceptual network.
    """

    def __init__(
        self,
        faces: torch.Tensor,
        n_vertices: int,
        active: torch.Tensor,
        region_allowed: torch.Tensor,
        landmarks: Callable[[torch.Tensor], torch.Tensor],
        cfg: Mapping[str, Any],
        uses_perceptual: bool,
        dense_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.base_weights = {k: float(v) for k, v in dict(cfg["weights"]).items()}
        unknown = set(self.base_weights) - set(TERMS)
        if unknown:
            raise ValueError(f"loss.weights has unknown terms {sorted(unknown)}; known: {sorted(TERMS)}")
        self.perceptual = PerceptualLoss(**cfg.get("perceptual", {})) if uses_perceptual else None
        cw = cfg.get("class_weights")
        self.register_buffer(
            "class_weights", torch.tensor(cw, dtype=torch.float32) if cw else None, persistent=False
        )
        points = str(cfg.get("landmark_points", "68"))
        if points not in ("68", "dense"):
            raise ValueError(f"loss.landmark_points={points!r}: use 68 or dense")
        if points == "dense":
            if dense_weights is None:
                raise ValueError(
                    "loss.landmark_points=dense needs a head model with a FaceMesh embedding; "
                    "run python -m src.tracking.calibrate_dense or use loss.landmark_points=68"
                )
            lw = dense_weights.detach().float() / dense_weights.float().mean()
        else:
            lw = torch.ones(68)
            lw[:17] = float(cfg.get("landmark_weights", {}).get("jaw", 1.0))
        self.landmark_key = Batch.LANDMARKS478 if points == "dense" else Batch.LANDMARKS68
        self.register_buffer("landmark_weights", lw, persistent=False)
        self.register_buffer("edges", mesh_edges(faces), persistent=False)
        self.register_buffer("faces", faces, persistent=False)
        self.register_buffer("active", active, persistent=False)
        self.register_buffer("region_allowed", region_allowed, persistent=False)
        self.n_vertices = n_vertices
        self.landmarks = landmarks
        self._laplacian: torch.Tensor | None = None  # sparse, built lazily on the right device

    def laplacian(self) -> torch.Tensor:
        """(V,V) sparse uniform Laplacian of the rendered mesh."""
        device = self.faces.device
        if self._laplacian is None or self._laplacian.device != device:
            self._laplacian = uniform_laplacian(self.faces, self.n_vertices).to(device)
        return self._laplacian

    def terms(
        self, batch: Mapping[str, torch.Tensor], out: Mapping[str, torch.Tensor], state: FrameState
    ) -> dict[str, Callable[[], torch.Tensor]]:
        """Every term as a callable (evaluated only when weighted)."""
        image, target, mask = out[Out.IMAGE], batch[Batch.IMAGE], batch[Batch.MASK]
        keep = pixel_weight(
            batch
        )  # padded crop pixels and occluders count nowhere (None: every pixel counts)
        full: list[torch.Tensor] = []

        def kept(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:  # x where kept, else the reference
            return x if keep is None else x * keep + ref * (1 - keep)

        def offsets_full() -> torch.Tensor:  # (B,V,3) offsets of every vertex, built once when needed
            if not full:
                verts = out[Out.VERTICES]
                full.append(verts.new_zeros(verts.shape).index_copy(1, self.active, out[Out.OFFSETS]))
            return full[0]

        def lmk() -> torch.Tensor:
            if self.landmark_key not in batch:
                raise ValueError(
                    f"the landmark term needs {self.landmark_key}.npy, which this subject lacks "
                    "(FaceMesh's 478 points come with video subjects): use loss.landmark_points=68"
                )
            pred = state.cameras.project(self.landmarks(out[Out.VERTICES]))
            size = state.cameras.image_size
            visible = landmark_visible(batch, self.landmark_key)
            return landmark_loss(pred, batch[self.landmark_key], self.landmark_weights, visible, size)

        def perceptual() -> torch.Tensor:
            if self.perceptual is None:
                raise RuntimeError("perceptual weight > 0 but no PerceptualLoss was built")
            return self.perceptual(kept(image, target), target)

        return {
            "rgb_l1": lambda: masked_l1(image, target, torch.ones_like(mask) if keep is None else keep,
                                        batch.get(Batch.SEGMENTATION), self.class_weights),
            "perceptual": perceptual,
            "silhouette": lambda: silhouette_loss(kept(out[Out.SOFT_ALPHA], mask), mask),
            "landmarks": lmk,
            "normals": lambda: normal_consistency(out[Out.NORMALS], batch[Batch.NORMALS], mask),
            "normal_laplacian": lambda: laplacian_normal_loss(out[Out.NORMALS], batch[Batch.NORMALS], mask),
            "semantic": lambda: semantic_loss(
                out[Out.REGIONS], batch[Batch.SEGMENTATION], self.region_allowed),
            "expression_prior": lambda: expression_prior(state.expression - state.prior_expression),
            "identity_prior": lambda: identity_prior(state.identity - state.prior_identity),
            "laplacian": lambda: laplacian_smoothness(offsets_full(), self.laplacian()),
            "edge_length": lambda: edge_length_loss(
                out[Out.CANONICAL], out[Out.CANONICAL] - offsets_full(), self.edges),
            "offset_magnitude": lambda: offset_magnitude(out[Out.OFFSETS]),
        }  # fmt: skip

    def forward(
        self,
        batch: Mapping[str, torch.Tensor],
        out: Mapping[str, torch.Tensor],
        state: FrameState,
        weights: Mapping[str, float],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted total (scalar) and the unweighted value of each weighted term."""
        return WeightedLoss(dict(weights))(self.terms(batch, out, state))

    def needs_soft_alpha(self, weights: Mapping[str, float]) -> bool:
        """Whether the weighted terms need the soft silhouette (and region maps from it)."""
        return weights.get("silhouette", 0) > 0 or weights.get("semantic", 0) > 0
