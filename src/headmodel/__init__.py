"""Morphable head models behind one interface (:class:`src.headmodel.base.HeadModel`).

Classes:
    :class:`~src.headmodel.base.HeadModel`: the interface (identity + expression + joint pose -> (B,V,3)
        vertices in metres, rigid head pose on top, 68 landmarks, region masks).
    :class:`~src.headmodel.ict.ICTHeadModel`: ICT-FaceKit Light (MIT; 100 identity modes, 53 ARKit
        expression blendshapes, no joints), read from ``ict_facekit_light.npz``;
        :mod:`src.headmodel.ict_convert` builds that npz from the original OBJ release.
    :class:`~src.headmodel.flame.FLAMEHeadModel`: FLAME 2020/2023 (user-licensed pkl, read without chumpy;
        300 shape, 100 expression, neck/jaw/eye joints with linear blend skinning, :mod:`src.headmodel.lbs`).
    :class:`~src.headmodel.subdivide.SubdividedHeadModel`: any of them on a midpoint-subdivided mesh (same
        parameters and surface, denser vertices for geometry refinement; ``conf/headmodel/ict_subdivided``).
Errors are :class:`~src.headmodel.base.HeadModelError` with a one-line message naming problem and fix.
"""

from src.headmodel.base import HeadModel, HeadModelError
from src.headmodel.flame import FLAMEHeadModel
from src.headmodel.ict import ICTHeadModel
from src.headmodel.subdivide import SubdividedHeadModel

__all__ = ["HeadModel", "HeadModelError", "ICTHeadModel", "FLAMEHeadModel", "SubdividedHeadModel"]
