"""Region lists of the head models, in one place: which parts are hidden, refined, and where they may appear.

Each head model exposes them as ``hidden_regions``, ``offset_regions`` and ``region_labels`` (see
:class:`src.headmodel.base.HeadModel`); avatars, the synthetic generator, tracking overlays, mesh export and
the semantic loss read them from the head model rather than naming regions themselves. Label names are
:data:`src.core.layout.SEG_LABELS`.
"""

from __future__ import annotations

from src.core.layout import SEG_LABELS

# every segmentation label except the background: a region allowed over these is never "misplaced"
FOREGROUND_LABELS: tuple[str, ...] = tuple(SEG_LABELS[1:])

# Parts drawn as transparent overlays in the original toolkit (tear film, eye-corner blend, ambient
# occlusion shell): opaque in a plain mesh renderer, so renderers and exporters hide them.
ICT_OVERLAY_REGIONS = (
    "lacrimal_fluid_left",
    "lacrimal_fluid_right",
    "eye_blend_left",
    "eye_blend_right",
    "eye_occlusion_left",
    "eye_occlusion_right",
)
# Not rendered by default: the overlays above and the eyelash shells (thin cards that a plain renderer
# draws as opaque sheets over the eyes).
ICT_HIDDEN_REGIONS = (*ICT_OVERLAY_REGIONS, "eyelashes_left", "eyelashes_right")
# Vertices a geometry-refinement network may move: the skin surface (face, scalp, ears and neck); eyes,
# teeth, sockets and overlays keep the blendshape model's shape.
ICT_OFFSET_REGIONS = ("face", "head_neck")
# Offset regions hair may grow from (the scalp part of them gets the large 'hair' offset bound of the mesh
# avatar, see src/models/nha/bounds.py): ICT's scalp is part of head_neck; its face region ends at the
# hairline.
ICT_HAIR_REGIONS = ("head_neck",)
# ICT-FaceKit region -> the SEG_LABELS it may be rendered over (for the semantic loss).
# Background is allowed for no region (the silhouette term handles coverage; this term handles *where*).
# Rationale: 'face' covers the forehead (often under hair), brows and lips, and ends under the chin; it
# must not cover visible eyes or an open mouth, so eyelids / lips that are closed in the model while open
# in the image are penalised. 'head_neck' is the scalp, ears and neck. The eye and mouth sockets are the
# inner walls seen through the eye / mouth openings, so they may border the lids and lips. Thin eye
# layers (lacrimal fluid, blend, occlusion) and eyelashes sit on the lid margin.
ICT_REGION_LABELS: dict[str, tuple[str, ...]] = {
    "face": ("skin", "neck", "hair", "brows", "lips"),
    "head_neck": ("skin", "neck", "hair"),
    "mouth_socket": ("mouth_interior", "teeth", "lips"),
    "eye_socket_left": ("eyes", "skin"),
    "eye_socket_right": ("eyes", "skin"),
    "gums_tongue": ("mouth_interior", "teeth", "lips"),
    "teeth": ("teeth", "mouth_interior"),
    "eyeball_left": ("eyes",),
    "eyeball_right": ("eyes",),
    "lacrimal_fluid_left": ("eyes", "skin"),
    "lacrimal_fluid_right": ("eyes", "skin"),
    "eye_blend_left": ("eyes", "skin"),
    "eye_blend_right": ("eyes", "skin"),
    "eye_occlusion_left": ("eyes", "skin"),
    "eye_occlusion_right": ("eyes", "skin"),
    "eyelashes_left": ("eyes", "skin"),
    "eyelashes_right": ("eyes", "skin"),
}


# FLAME regions hair may grow from ('head' is the whole model when no masks file is given).
FLAME_HAIR_REGIONS = ("head", "scalp", "boundary", "left_ear", "right_ear", "neck")

# Regions of FLAME_masks.pkl (FLAME website) -> the SEG_LABELS each may be rendered over (semantic loss).
# 'head' (vertices in no mask, or the single region without masks) and any mask name not listed here may
# cover every foreground label, i.e. the semantic term leaves them alone. A vertex takes the smallest mask
# containing it, so 'face' is what remains of the face outside the eye, nose, lip and forehead masks.
FLAME_REGION_LABELS: dict[str, tuple[str, ...]] = {
    "face": ("skin", "neck", "hair", "brows", "lips"),
    "forehead": ("skin", "hair", "brows"),
    "nose": ("skin",),
    "lips": ("lips", "skin", "mouth_interior", "teeth"),
    "eye_region": ("skin", "brows", "eyes", "hair"),
    "left_eye_region": ("skin", "brows", "eyes", "hair"),
    "right_eye_region": ("skin", "brows", "eyes", "hair"),
    "left_eyeball": ("eyes",),
    "right_eyeball": ("eyes",),
    "scalp": ("hair", "skin"),
    "left_ear": ("skin", "hair"),
    "right_ear": ("skin", "hair"),
    "neck": ("neck", "skin", "hair"),
    "boundary": ("skin", "neck", "hair"),
}
