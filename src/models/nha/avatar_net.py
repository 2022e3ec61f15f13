"""The avatar's rendering core: head model + geometry offsets -> rasterised surface -> SIREN colours."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from src.core.outputs import Out
from src.headmodel.rotation import axis_angle_to_matrix
from src.losses import region_label_matrix
from src.models.nha.bounds import offset_bounds as offset_bounds_of
from src.models.nha.neck import neck_weights, skin_neck
from src.models.nha.networks import FiLMSiren, GeometryMLP, MappingNetwork, UVEmbedding, positional_encoding
from src.render import Cameras, MeshRenderer, box_filter, supersample_cameras


class NHARenderer(nn.Module):
    """Renders the refined, textured head for given parameters and cameras.

    Args:
        headmodel: a HeadModel instance.
        renderer: a MeshRenderer.
        hidden_regions: regions not rendered; None: the head model's ``hidden_regions`` (ICT: transparent
            overlays and eyelash shells; FLAME: none).
        offset_regions: regions whose vertices the geometry MLP may move; None: the head model's
            ``offset_regions`` (ICT: face, head_neck; FLAME: all).
        geometry: kwargs of GeometryMLP; texture: kwargs of FiLMSiren (hidden, layers);
        mapping: kwargs of MappingNetwork (width, depth); uv_embedding: kwargs of UVEmbedding.
        pos_freqs: positional-encoding frequencies of the canonical position fed to the texture.
        background_size: side of the learned background grid.
        offset_bounds: {hair, body, smooth}: per-vertex offset bounds beyond ``geometry.max_offset`` (see
            :func:`src.models.nha.bounds.offset_bounds`): ``hair`` metres more at the top of the head model's
            hair regions, ``body`` metres more at the bottom of the mesh (shoulders), ``smooth`` passes;
            None or zeros: ``max_offset`` everywhere.
        background_residual: over a background plate the grid adds ``r * (sigmoid(grid) - 0.5)``, a
            residual in (-r/2, r/2); r = 2 lets the grid turn any plate colour into any other.
        neck: {length, smooth}: a neck joint (:mod:`src.models.nha.neck`): the head turns on the neck and
            the torso below ``length`` of the chin-to-bottom height stays upright; None: the rigid head pose
            moves every vertex.
    """

    def __init__(
        self,
        headmodel: nn.Module,
        renderer: MeshRenderer,
        geometry: dict,
        texture: dict,
        mapping: dict,
        uv_embedding: dict,
        *,
        pos_freqs: int,
        background_size: int,
        background_residual: float,
        hidden_regions: list[str] | None = None,
        offset_regions: list[str] | None = None,
        offset_bounds: dict | None = None,
        neck: dict | None = None,
    ) -> None:
        super().__init__()
        self.headmodel = headmodel
        self.renderer = renderer
        hm = headmodel
        hidden_regions = hm.hidden_regions if hidden_regions is None else list(hidden_regions)
        offset_regions = hm.offset_regions if offset_regions is None else list(offset_regions)
        keep_faces = ~hm.region_face_mask(hidden_regions)
        self.register_buffer("faces", hm.faces[keep_faces], persistent=False)
        self.register_buffer("face_uvs", hm.face_uvs[keep_faces], persistent=False)
        self.register_buffer("face_regions", hm.face_regions[keep_faces], persistent=False)
        hm.region_face_mask(offset_regions)  # one-line error for a name the head model lacks
        ids = torch.tensor(
            [hm.region_names.index(r) for r in offset_regions], device=hm.vertex_regions.device
        )
        offset_mask = torch.isin(hm.vertex_regions, ids)
        self.register_buffer("active", offset_mask.nonzero().squeeze(1), persistent=False)
        ob = dict(offset_bounds or {})
        hair_ids = torch.tensor(
            [hm.region_names.index(r) for r in hm.hair_regions], device=hm.vertex_regions.device
        )
        bound = offset_bounds_of(
            hm.template, hm.landmarks(hm.template[None])[0], hm.faces[keep_faces], offset_mask,
            torch.isin(hm.vertex_regions, hair_ids), geometry.get("max_offset", 0.01),
            ob.get("hair", 0.0), ob.get("body", 0.0), int(ob.get("smooth", 0)),
        )  # fmt: skip
        self.register_buffer("bound", bound[self.active], persistent=False)
        weights = pivot = None
        if neck is not None:
            weights, pivot = neck_weights(
                hm.template, hm.landmarks(hm.template[None])[0], hm.faces[keep_faces], **neck
            )
        self.register_buffer("neck_weights", weights, persistent=False)
        self.register_buffer("neck_pivot", pivot, persistent=False)
        # (K,C) which segmentation labels each region may be rendered over (semantic loss)
        allowed = region_label_matrix(hm.region_names, hm.region_labels)
        self.register_buffer("region_allowed", allowed, persistent=False)
        t = hm.template
        centre, scale = t.mean(0), (t - t.mean(0)).abs().max()
        self.register_buffer("x_norm", (t - centre) / scale, persistent=False)  # (V,3) in [-1,1]
        cond_dim = hm.n_expression + 3
        self.geometry = GeometryMLP(cond_dim, **geometry)
        self.pos_freqs = pos_freqs
        emb_c = uv_embedding.get("channels", 16)
        in_dim = 3 * (1 + 2 * pos_freqs) + emb_c + 27
        self.texture = FiLMSiren(in_dim, out_dim=3, **texture)
        self.mapping = MappingNetwork(
            cond_dim, self.texture.out.in_features, len(self.texture.linears), **mapping
        )
        self.uv_embedding = UVEmbedding(**uv_embedding)
        self.background = nn.Parameter(torch.zeros(1, 3, background_size, background_size))
        self.background_residual = float(background_residual)

    def condition(self, expression: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        """(B,Ne),(B,3) -> (B,Ne+3) network condition."""
        return torch.cat([expression, rotation], dim=-1)

    def refined_canonical(
        self, identity: torch.Tensor, expression: torch.Tensor, rotation: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Head-model vertices plus geometry offsets, before the rigid pose.

        Returns:
            vertices (B,V,3) and offsets (B,V_active,3).
        """
        b = expression.shape[0]
        canon = self.headmodel.canonical(identity[None].expand(b, -1), expression)
        offsets = self.geometry(self.x_norm[self.active], self.condition(expression, rotation), self.bound)
        return canon.index_add(1, self.active, offsets), offsets

    def pose(self, vertices: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
        """Posed vertices (B,V,3) from canonical ones (B,V,3), rotation (B,3) and translation (B,3): the head
        pose on a neck over an upright torso, or rigid when the renderer has no neck."""
        R = axis_angle_to_matrix(rotation)
        return skin_neck(vertices, R, translation, self.neck_weights, self.neck_pivot)

    def forward(
        self,
        identity: torch.Tensor,
        expression: torch.Tensor,
        rotation: torch.Tensor,
        translation: torch.Tensor,
        cameras: Cameras,
        supersample: int = 1,
        soft_alpha: bool = False,
        sigma: float = 0.5,
        background: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Render a batch.

        Args:
            identity (Ni,), expression (B,Ne), rotation (B,3), translation (B,3); cameras at output size.
            supersample: render at this factor and box-filter down (anti-aliased edges).
            soft_alpha: also compute the soft silhouette (for silhouette losses).
            background: (B,3,H',W') image behind the head (a video's background plate), refined by the
                learned grid as a residual in (-1, 1), zero at initialisation (it learns what is static
                but not background, e.g. the shoulders the head mesh does not cover); None: the learned
                grid alone.

        Returns:
            dict keyed by :class:`Out`: IMAGE (B,3,H,W) in [0,1] over the learned background, COVERAGE
            (B,1,H,W) the box-filtered hard mask, SOFT_ALPHA (B,1,H,W) the soft silhouette (only when
            ``soft_alpha``), NORMALS (B,3,H,W) camera space, VERTICES (B,V,3) posed, CANONICAL (B,V,3)
            refined vertices before the pose, OFFSETS (B,Va,3), REGIONS (B,K,H,W) region membership
            (one-hot of the visible face's region, box-filtered).
        """
        B = expression.shape[0]
        refined, offsets = self.refined_canonical(identity, expression, rotation)
        verts = self.pose(refined, rotation, translation)
        H, W = cameras.image_size
        s = supersample
        cams = supersample_cameras(cameras, s)
        out = self.renderer(
            verts,
            self.faces,
            cams,
            uv=(self.headmodel.uvs, self.face_uvs),
            soft_alpha=soft_alpha,
            sigma=sigma * s,
        )
        mask = out["mask"]  # (B,1,Hs,Ws) bool
        normals = out["normals"]
        b_idx, yy, xx = mask[:, 0].nonzero(as_tuple=True)
        frags_face = out["face_idx"][b_idx, yy, xx]
        bary = out["bary"][b_idx, yy, xx]  # (P,3)
        tri = self.faces[frags_face]
        pos = (self.x_norm[tri] * bary[..., None]).sum(1)  # canonical position (P,3)
        uv = out["uv"][b_idx, :, yy, xx]
        patch = F.unfold(normals, 3, padding=1).view(B, 27, H * s, W * s)[b_idx, :, yy, xx]
        feats = torch.cat([positional_encoding(pos, self.pos_freqs), self.uv_embedding(uv), patch], dim=-1)
        freq, phase = self.mapping(self.condition(expression, rotation))
        rgb = (torch.tanh(self.texture(feats, freq, phase, b_idx)) + 1) / 2  # (P,3)
        img = torch.zeros(B, H * s, W * s, 3, device=rgb.device, dtype=rgb.dtype)
        img = img.index_put((b_idx, yy, xx), rgb).permute(0, 3, 1, 2)
        m = mask.to(img.dtype)
        bg = torch.sigmoid(
            F.interpolate(self.background, size=(H * s, W * s), mode="bilinear", align_corners=False)
        )
        if background is not None:  # the plate at the output size, each pixel repeated s x s: exact after the
            plate = background.to(bg)  # box filter
            if tuple(plate.shape[-2:]) != (H, W):
                plate = F.interpolate(
                    plate, size=(H, W), mode="bilinear", align_corners=False, antialias=True
                )
            plate = plate.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)
            bg = (plate + self.background_residual * (bg - 0.5)).clamp(0, 1)
        img = img * m + bg * (1 - m)
        regions = F.one_hot(self.face_regions[out["face_idx"].clamp_min(0)], len(self.headmodel.region_names))
        regions = regions.permute(0, 3, 1, 2).to(img.dtype) * m
        maps = {Out.IMAGE: img, Out.COVERAGE: m, Out.REGIONS: regions}
        if soft_alpha:
            maps[Out.SOFT_ALPHA] = out["alpha"]
        if s > 1:
            maps = {k: box_filter(x, s) for k, x in maps.items()}
            normals = F.normalize(box_filter(normals, s), dim=1) * (box_filter(m, s) > 0.5)
        return {
            **maps,
            Out.NORMALS: normals,
            Out.VERTICES: verts,
            Out.CANONICAL: refined,
            Out.OFFSETS: offsets,
        }

    @torch.no_grad()
    def colors_at(
        self, points_norm: torch.Tensor, uv: torch.Tensor, normals_cam: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor:
        """Texture colours of surface points for baking.

        Args:
            points_norm: (P,3) normalised canonical positions; uv: (P,2); normals_cam: (P,3) camera-space
            normals (used as a flat 3x3 normal patch); cond: (1,Ne+3) condition.

        Returns:
            (P,3) colours in [0,1].
        """
        patch = normals_cam.repeat_interleave(9, dim=1)  # (P,27): channel-major like F.unfold
        feats = torch.cat(
            [positional_encoding(points_norm, self.pos_freqs), self.uv_embedding(uv), patch], -1
        )
        freq, phase = self.mapping(cond)
        batch = torch.zeros(points_norm.shape[0], dtype=torch.long, device=points_norm.device)
        return (torch.tanh(self.texture(feats, freq, phase, batch)) + 1) / 2
