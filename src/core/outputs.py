"""Declared names of the tensors that flow between data, models, losses, metrics and callbacks.

Every dict key a batch, a model's outputs or an evaluation step carries is one of these constants (as
nerfstudio's ``FieldHeadNames``), so that a callback or a metric names what it reads and a search finds
every producer and consumer of a key.

Three different "masks" used to share one name; they are three names now:

* :attr:`Batch.MASK`: the ground-truth foreground matte of a frame, from the data (``masks/*.png``).
* :attr:`Out.SOFT_ALPHA`: a mesh avatar's soft silhouette (differentiable w.r.t. the vertices), computed
  only when a silhouette-like loss needs it.
* :attr:`Out.COVERAGE`: a mesh avatar's rasterised coverage (1 inside the rendered mesh, box-filtered
  to fractional values at edges when supersampled).
* :attr:`Out.MATTE`: the foreground mask an image avatar's generator predicts (a network output).
"""

from __future__ import annotations


class _Names:
    """Base of the name tables: :meth:`all` lists the declared values."""

    @classmethod
    def all(cls) -> frozenset[str]:
        """Every name declared by this table."""
        return frozenset(v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str))


class Batch(_Names):
    """Keys of a data batch (one item of :class:`src.datamodules.dataset.SubjectFrames`, stacked)."""

    INDEX = "index"  # (B,) long frame number in the sequence
    IMAGE = "image"  # (B,3,H,W) RGB in [0,1]
    MASK = "mask"  # (B,1,H,W) ground-truth foreground matte in [0,1] (when the subject has masks)
    SEGMENTATION = "segmentation"  # (B,H,W) long label ids of src.core.layout.SEG_LABELS
    NORMALS = "normals"  # (B,3,H,W) camera-space unit normals, 0 on the background
    LANDMARKS68 = "landmarks68"  # (B,68,2) pixels (x,y)
    LANDMARKS478 = "landmarks478"  # (B,478,2) FaceMesh's points, pixels (video subjects)
    VALID = "valid"  # (B,1,H,W) 1 where the frame shows the video, 0 where the crop was padded (all ones
    # for subjects without a validity mask)
    OCCLUSION = "occlusion"  # (B,1,H,W) 1 where something (a hand, an object) covers the face
    OCCLUDED = "occluded"  # (B,) 1.0 for frames flagged as occluded in meta.json
    BACKGROUND = "background"  # (B,3,H,W) the static background plate (aligned to the frame), when estimated


class Out(_Names):
    """Keys of a model's outputs (``forward``, ``render_params``) and of its evaluation step's images."""

    IMAGE = "image"  # (B,3,H,W) the avatar's image over its background (training: unclamped; else [0,1])
    SOFT_ALPHA = "soft_alpha"  # (B,1,H,W) soft silhouette of a mesh avatar (only when asked for)
    COVERAGE = "coverage"  # (B,1,H,W) rasterised coverage of a mesh avatar in [0,1]
    MATTE = "matte"  # (B,1,H,W) foreground mask predicted by an image avatar's generator, [0,1]
    NORMALS = "normals"  # (B,3,H,W) rendered camera-space normals, 0 off the mesh
    VERTICES = "vertices"  # (B,V,3) posed world-space vertices (metres)
    CANONICAL = "canonical"  # (B,V,3) refined vertices before the rigid pose
    OFFSETS = "offsets"  # (B,Va,3) geometry offsets of the vertices the refinement may move
    REGIONS = "regions"  # (B,K,H,W) one-hot head-model region of the visible surface (box-filtered)
    CONDITION = "condition"  # (B,3,H,W) the head-model render an image avatar is conditioned on, [0,1]
    CONDITION_UV = "condition_uv"  # (B,2,H,W) its UV image
    CONDITION_MASK = "condition_mask"  # (B,1,H,W) its coverage
    CONDITION_STACK = "condition_stack"  # (B,6,H,W) the three above concatenated (network input)
